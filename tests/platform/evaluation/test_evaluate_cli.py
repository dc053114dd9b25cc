"""The evaluation command line: its words, its configuration errors and its exit codes."""

from __future__ import annotations

import pytest

from platform import evaluate
from platform.evaluation.settings import (
    BENCHMARKS,
    EvalSettingsError,
    load_settings,
    parse_words,
)

HOSTED = ["judge=hosted", "judge.model_path=builtin:tiny-llama"]
EXTERNAL = ["judge.base_url=https://judge.example/v1", "judge.model=gpt-4o",
            "judge.api_key_env=JUDGE_KEY"]


def _error(words: list[str]) -> str:
    with pytest.raises(EvalSettingsError) as caught:
        load_settings(words)
    return str(caught.value)


def test_a_hosted_judge_configuration():
    config = load_settings(["model=outputs/run/model", "benchmarks=mt_bench,arena_hard",
                            "limit=3", "generation.max_tokens=64", *HOSTED])
    assert config.benchmarks == ["mt_bench", "arena_hard"]
    assert config.limit == 3 and config.generation.max_tokens == 64
    assert (config.judge.kind, config.judge.model_path) == ("hosted", "builtin:tiny-llama")
    assert (config.generation.temperature, config.generation.top_p) == (0.7, 0.95)


def test_an_external_judge_configuration_and_all_benchmarks():
    config = load_settings(["model=m", "benchmarks=all", *EXTERNAL])
    assert config.benchmarks == list(BENCHMARKS)
    assert (config.judge.kind, config.judge.base_url) == ("external",
                                                          "https://judge.example/v1")


def test_text_fields_keep_the_typed_text():
    # YAML would read these as a float and an int; a run id and a model name are text.
    config = load_settings(["model=12e45", "judge.base_url=http://h/v1", "judge.model=4"])
    assert config.model == "12e45" and config.judge.model == "4"


def test_the_model_is_required():
    assert "model is required" in _error(HOSTED)


def test_the_judge_is_required_and_the_message_says_how():
    message = _error(["model=m"])
    assert "judge is required" in message and "judge=hosted judge.model_path" in message


def test_an_external_judge_needs_an_endpoint():
    message = _error(["model=m", "judge.model=gpt-4o"])
    assert "judge.kind=external needs judge.base_url" in message and "'base_url'" in message


def test_a_hosted_judge_takes_no_endpoint():
    message = _error(["model=m", *HOSTED, "judge.base_url=http://h/v1"])
    assert "judge.kind=hosted needs judge.model_path" in message
    assert "'http://h/v1'" in message


def test_an_unknown_key_lists_the_accepted_ones():
    message = _error(["model=m", *HOSTED, "generation.temprature=0.1"])
    assert "unknown key 'generation.temprature' (value 0.1)" in message
    assert "'temperature'" in message and "'top_p'" in message


def test_an_unknown_benchmark_is_named_with_the_accepted_ones():
    message = _error(["model=m", *HOSTED, "benchmarks=mt_bench,mmlu"])
    assert "'mmlu'" in message and "'arena_hard'" in message


def test_values_out_of_range_are_reported_together():
    message = _error(["model=m", *HOSTED, "limit=0", "generation.top_p=1.5"])
    assert "2 problem(s)" in message and "limit = 0" in message
    assert "generation.top_p = 1.5" in message


def test_a_missing_data_dir_says_what_it_must_hold(tmp_path):
    message = _error(["model=m", *HOSTED, f"data_dir={tmp_path / 'nowhere'}"])
    assert "is not a directory" in message and "judge_prompts/" in message


def test_a_word_without_equals_sign_is_refused():
    with pytest.raises(EvalSettingsError, match="cannot read 'limit'"):
        parse_words(["limit"])


def test_a_key_cannot_be_a_value_and_a_section():
    with pytest.raises(EvalSettingsError, match="already has a value"):
        parse_words(["generation=1", "generation.seed=2"])


def test_the_command_exits_2_on_a_bad_configuration(capsys):
    assert evaluate.main(["model=m", "judge.model=x"]) == 2
    assert "judge.kind=external needs judge.base_url" in capsys.readouterr().err


def test_help_lists_every_key(capsys):
    assert evaluate.main(["--help"]) == 0
    out = capsys.readouterr().out
    for key in ("model=(required)", "judge.api_key_env=None", "generation.top_p=0.95",
                "pairwise.data=['builtin:arithmetic']", "tracking.experiment="):
        assert key in out


def test_list_fields_are_read_as_yaml_lists():
    config = load_settings(["model=m", *HOSTED, "pairwise.data=[a.jsonl, b.jsonl]"])
    assert config.pairwise.data == ["a.jsonl", "b.jsonl"]


def test_one_source_of_api_key():
    message = _error(["model=m", *EXTERNAL, "judge.api_key_file=/keys/judge"])
    assert "set one of judge.api_key_env and judge.api_key_file" in message


def test_a_missing_api_key_stops_the_run_before_any_work(monkeypatch, capsys, mlflow_uri,
                                                         tiny_model_path):
    monkeypatch.delenv("JUDGE_KEY", raising=False)
    words = [f"model={tiny_model_path}", *EXTERNAL, f"tracking.uri={mlflow_uri}",
             "generation.backend=transformers"]
    assert evaluate.main(words) == 1
    assert "'JUDGE_KEY' (api_key_env) is unset" in capsys.readouterr().err
