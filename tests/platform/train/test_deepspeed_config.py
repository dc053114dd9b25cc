"""The DeepSpeed config generated from train.* keys, and a user's JSON merged over it."""

from __future__ import annotations

import json

import pytest

from platform.config import TrainConfig
from platform.config_loading import ConfigError, load_config
from platform.train import ds_override
from platform.train.engine import deepspeed_config, reference_config


def test_optimizer_offload_goes_to_the_zero_section():
    config = deepspeed_config(TrainConfig(zero_stage=2, offload_optimizer=True), on_gpu=False)
    assert config["zero_optimization"] == {
        "stage": 2, "offload_optimizer": {"device": "cpu", "pin_memory": False}}
    assert config["zero_force_ds_cpu_optimizer"] is False


def test_offload_without_a_partitioning_stage_is_refused():
    with pytest.raises(ConfigError, match="zero_stage=1, 2 or 3"):
        load_config(["train.offload_optimizer=true"])


def test_a_raw_json_overrides_the_generated_config(tmp_path):
    file = tmp_path / "ds.json"
    file.write_text(json.dumps({
        "zero_optimization": {"stage": 3, "stage3_max_live_parameters": 1000},
        "gradient_clipping": 0.5, "train_micro_batch_size_per_gpu": "auto",
        "communication_data_type": "fp32"}))
    config = load_config([f"train.deepspeed_config={file}", "train.micro_batch_size=3"])
    merged = deepspeed_config(config.train, on_gpu=False)
    assert merged["zero_optimization"] == {"stage": 3, "stage3_max_live_parameters": 1000}
    assert merged["gradient_clipping"] == 0.5
    assert merged["train_micro_batch_size_per_gpu"] == 3  # "auto": the generated value
    assert merged["communication_data_type"] == "fp32"
    assert merged["optimizer"]["type"] == "AdamW"  # untouched keys stay


@pytest.mark.parametrize(("content", "message"), [
    (None, "no such file"),
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "holds a list"),
    ('{"train_batch_size": 64}', "train_batch_size .set train.micro_batch_size"),
    ('{"scheduler": {"type": "WarmupLR"}}', "scheduler .set train.lr_schedule"),
])
def test_bad_raw_json_is_refused_with_what_to_do(tmp_path, content, message):
    file = tmp_path / "ds.json"
    if content is not None:
        file.write_text(content)
    with pytest.raises(ConfigError, match=message) as error:
        load_config([f"train.deepspeed_config={file}"])
    assert "train.deepspeed_config" in str(error.value)


def test_merge_keeps_the_generated_config_intact():
    generated = {"a": {"b": 1, "c": 2}}
    merged = ds_override.merge(generated, {"a": {"b": 5}})
    assert merged == {"a": {"b": 5, "c": 2}} and generated == {"a": {"b": 1, "c": 2}}


def test_the_partitioned_reference_has_no_optimizer_and_follows_precision():
    policy = deepspeed_config(TrainConfig(zero_stage=3, micro_batch_size=2), on_gpu=False)
    config = reference_config(policy)
    assert config["zero_optimization"]["stage"] == 3
    assert "optimizer" not in config and config["bf16"] == {"enabled": False}
    assert config["train_micro_batch_size_per_gpu"] == 2
