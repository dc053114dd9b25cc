"""Recipes, dotted overrides and the errors a user sees for bad configuration."""

from __future__ import annotations

import pytest

from objectives.bco import BCOConfig
from platform.config import RunConfig, flatten
from platform.config_loading import ConfigError, load_config, parse_overrides


def test_overrides_are_typed_yaml_values():
    recipe, overrides = parse_overrides(
        ["recipe=tiny", "train.lr=1e-6", "train.seed=7", "data.train=[a.jsonl,b.jsonl]",
         "model.gradient_checkpointing=true"]
    )
    assert recipe == "tiny"
    assert overrides == {
        "train": {"lr": 1e-6, "seed": 7},
        "data": {"train": ["a.jsonl", "b.jsonl"]},
        "model": {"gradient_checkpointing": True},
    }


def test_recipe_then_overrides_take_precedence():
    config = load_config(["recipe=tiny", "train.max_steps=3", "loss.beta=0.25"])
    assert config.model.name == "builtin:tiny-llama"  # from the recipe
    assert config.train.max_steps == 3  # override beats recipe
    assert config.train.adam_eps == 1e-8  # model default
    assert config.objective_config() == BCOConfig(beta=0.25)


def test_unknown_key_names_the_path_value_and_accepted_keys():
    with pytest.raises(ConfigError) as info:
        load_config(["train.micro_batch_sise=4"])
    message = str(info.value)
    assert "unknown key 'train.micro_batch_sise' (value 4)" in message
    assert "'micro_batch_size'" in message


def test_bad_value_names_the_path_value_and_what_is_allowed():
    with pytest.raises(ConfigError) as info:
        load_config(["train.zero_stage=5"])
    message = str(info.value)
    assert "train.zero_stage = 5" in message
    assert "less than or equal to 3" in message


def test_unknown_objective_lists_the_registered_ones():
    with pytest.raises(ConfigError) as info:
        load_config(["objective=bcoo"])
    assert "objective 'bcoo' is not registered" in str(info.value)
    assert "'bco'" in str(info.value) and "'dpo'" in str(info.value)


def test_objective_options_are_checked_by_the_objective():
    with pytest.raises(ConfigError) as info:
        load_config(["loss.delta_ema_decay=1.5"])
    message = str(info.value)
    assert "loss.delta_ema_decay = 1.5" in message
    assert "'delta_ema_decay'" in message  # accepted options are listed


def test_malformed_words_and_missing_recipes_are_explained():
    with pytest.raises(ConfigError, match="dotted.key=value"):
        load_config(["train.lr"])
    with pytest.raises(ConfigError, match="recipe 'nope' not found"):
        load_config(["recipe=nope"])
    with pytest.raises(ConfigError, match="cannot also hold keys"):
        load_config(["objective=bco", "objective.beta=1"])


def test_prompt_length_must_leave_room_for_the_completion():
    with pytest.raises(ConfigError, match="must be below data.max_length"):
        load_config(["data.max_length=64", "data.max_prompt_length=64"])


def test_flatten_gives_dotted_params():
    flat = flatten(RunConfig())
    assert flat["train.lr"] == 5e-7
    assert flat["objective"] == "bco"
    assert flat["data.train"] == ["builtin:arithmetic"]
