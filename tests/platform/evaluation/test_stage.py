"""The ``eval`` stage of ``platform.run``: its configuration, the evaluation it builds, and
what the command does when the evaluation succeeds or fails (training and evaluation
replaced by stand-ins; the real thing is in test_stage_end_to_end.py)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from platform import run, tracking
from platform.config import flatten
from platform.config_loading import ConfigError, help_text, load_config
from platform.evaluation import stage
from platform.evaluation.runner import EvalOutcome
from platform.evaluation.settings import load_settings
from platform.train.launcher import TrainResult

HOSTED = ["eval.judge=hosted", "eval.judge.model_path=builtin:tiny-llama"]
# An endpoint judge and in-process generation: nothing needs .venv-eval to start.
EXTERNAL = ["eval.judge.base_url=http://127.0.0.1:9/v1", "eval.judge.model=judge",
            "eval.generation.backend=transformers"]
RUN_ID = "0123456789abcdef0123456789abcdef"


def _error(words: list[str]) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(words)
    return str(caught.value)


# Configuration -------------------------------------------------------------------------

def test_the_default_run_has_no_eval_stage_and_logs_no_eval_params():
    config = load_config([])
    assert not stage.is_enabled(config)
    assert "eval" not in config.model_dump()
    assert not [key for key in flatten(config) if key.startswith("eval")]


def test_the_documented_words_configure_the_stage():
    config = load_config(["objective=bco", "eval.benchmarks=pairwise,mt_bench", *HOSTED,
                          "eval.limit=2"])
    assert stage.is_enabled(config)
    assert config.eval.benchmarks == ["pairwise", "mt_bench"] and config.eval.limit == 2
    assert (config.eval.judge.kind, config.eval.judge.model_path) == (
        "hosted", "builtin:tiny-llama")
    assert (config.eval.generation.temperature, config.eval.generation.top_p) == (0.7, 0.95)


def test_the_judge_shorthand_works_in_either_order_and_text_stays_text():
    config = load_config(["eval.benchmarks=all", f"eval.judge.model_path={'1' * 32}",
                          "eval.judge=hosted"])
    assert config.eval.judge.kind == "hosted"
    assert config.eval.judge.model_path == "1" * 32  # a run id, not a number
    assert config.eval.benchmarks == ["pairwise", "mt_bench", "alpaca_eval", "arena_hard"]


def test_benchmarks_without_a_judge_are_refused_with_how_to_add_one():
    message = _error(["eval.benchmarks=mt_bench"])
    assert "eval.benchmarks=mt_bench needs a judge" in message
    assert "eval.judge=hosted eval.judge.model_path=<model>" in message


def test_eval_keys_without_benchmarks_are_refused_not_ignored():
    message = _error([*HOSTED, "eval.limit=2"])
    assert "['eval.judge', 'eval.limit'] are set but eval.benchmarks is empty" in message


def test_an_unknown_eval_key_names_its_path_value_and_the_accepted_keys():
    message = _error(["eval.benchmarks=mt_bench", *HOSTED, "eval.judge.modle_path=x"])
    assert "unknown key 'eval.judge.modle_path' (value 'x')" in message
    assert "keys accepted in 'eval.judge'" in message and "'model_path'" in message


def test_the_evaluated_model_is_not_a_key_of_the_stage():
    message = _error(["eval.benchmarks=mt_bench", *HOSTED, "eval.model=m"])
    assert "unknown key 'eval.model'" in message and "'benchmarks'" in message


def test_bad_values_name_the_path_the_value_and_what_is_accepted():
    message = _error(["eval.benchmarks=mt_bench,mmlu", *HOSTED, "eval.limit=0"])
    assert "2 problem(s)" in message
    assert "eval.benchmarks.1 = 'mmlu'" in message and "'arena_hard'" in message
    assert "eval.limit = 0" in message and "greater than or equal to 1" in message


def test_the_judge_is_checked_as_platform_evaluate_checks_it():
    message = _error(["eval.benchmarks=mt_bench", "eval.judge.model=gpt-4o"])
    assert "eval.judge" in message and "judge.kind=external needs judge.base_url" in message


def test_a_missing_benchmark_folder_is_refused_before_training(tmp_path, monkeypatch):
    monkeypatch.setenv("BCO_EVAL_DATA_DIR", str(tmp_path / "nowhere"))  # the default
    message = _error(["eval.benchmarks=mt_bench", *HOSTED])
    assert "eval.data_dir" in message and "is not a directory" in message


def test_help_lists_the_stage_keys():
    text = help_text()
    for key in ("eval.benchmarks=[]", "eval.judge.model_path=None", "eval.limit=None",
                "eval.generation.top_p=0.95", "train.lr=5e-07"):
        assert key in text


# The evaluation the stage runs ----------------------------------------------------------

def test_the_evaluation_reads_the_training_runs_model_and_logs_to_it():
    config = load_config(["eval.benchmarks=mt_bench", *HOSTED, "eval.limit=3",
                          "resources.ray_address=auto"])
    settings = stage.eval_config(config, RUN_ID, "sqlite:///store.db")
    assert settings.model == RUN_ID and settings.limit == 3
    assert (settings.tracking.uri, settings.tracking.new_run) == ("sqlite:///store.db", False)
    assert settings.ray_address == "auto"
    assert settings.judge == config.eval.judge


def test_pairwise_references_default_to_the_training_datas_test_split():
    config = load_config(["data.train=[feedback.jsonl]", "data.test_fraction=0.2",
                          "data.split_seed=7", "eval.benchmarks=pairwise", *HOSTED])
    pairwise = stage.eval_config(config, RUN_ID, "sqlite:///s.db").pairwise
    assert (pairwise.data, pairwise.test_fraction, pairwise.split_seed) == (
        ["feedback.jsonl"], 0.2, 7)

    config = load_config(["data.train=[feedback.jsonl]", "data.test_fraction=0.2",
                          "eval.benchmarks=pairwise", *HOSTED, "eval.pairwise.data=[test.jsonl]"])
    pairwise = stage.eval_config(config, RUN_ID, "sqlite:///s.db").pairwise
    assert (pairwise.data, pairwise.test_fraction) == (["test.jsonl"], 0.2)  # per key


def test_the_retry_command_runs_exactly_the_same_evaluation(tmp_path):
    config = load_config([
        "data.train=[a.jsonl, b.jsonl]", "data.test_fraction=0.25",
        "eval.benchmarks=pairwise,arena_hard", *EXTERNAL, "eval.judge.api_key_env=KEY",
        "eval.limit=4", "eval.generation.temperature=0.3", "eval.judge.timeout_s=12.5",
        f"eval.judge.cache_path={tmp_path / 'my cache.jsonl'}",
        "eval.alpaca_eval.compare_with=[gpt4_turbo]", "eval.generation.trust_remote_code=true"])
    settings = stage.eval_config(config, RUN_ID, "sqlite:///store.db")

    command = stage.retry_command(settings)

    words = shlex.split(command)
    assert words[:4] == ["python", "-m", "platform.evaluate", f"model={RUN_ID}"]
    assert load_settings(words[3:]) == settings


# The command: training, then the stage --------------------------------------------------

@pytest.fixture
def trained(monkeypatch, mlflow_uri, tmp_path):
    """``launch`` replaced by one that opens a finished run; returns the calls."""
    calls = []

    def launch(config, parent_run_id=None):
        tags = {"mlflow.parentRunId": parent_run_id} if parent_run_id else {}
        run_id = tracking.start_run(mlflow_uri, config.tracking.experiment, config.objective,
                                    {"objective": config.objective}, tags)
        tracking.finish_run(mlflow_uri, run_id, succeeded=True)
        calls.append(config.objective)
        return TrainResult(run_id, mlflow_uri, {}, str(tmp_path / config.objective / "model"))

    monkeypatch.setattr("platform.train.launcher.launch", launch)
    return calls


@pytest.fixture
def evaluated(monkeypatch):
    """``evaluate`` replaced by one that logs a score to the run, or fails for the
    objectives listed in ``failing``; returns the configs it received."""
    received, failing = [], set()

    def evaluate(settings):
        received.append(settings)
        client = MlflowClient(settings.tracking.uri)
        if client.get_run(settings.model).info.run_name in failing:
            raise RuntimeError("judge server did not start")
        client.log_metric(settings.model, "eval/mt_bench/score", 5.0)
        return EvalOutcome(settings.model, settings.tracking.uri, False, "model", [])

    monkeypatch.setattr("platform.evaluation.runner.evaluate", evaluate)
    return received, failing


def test_a_run_evaluates_its_trained_policy_after_training(trained, evaluated, mlflow_uri,
                                                           capsys):
    received, _ = evaluated
    words = ["eval.benchmarks=mt_bench", *EXTERNAL, f"tracking.uri={mlflow_uri}"]

    assert run.main(words) == 0

    (settings,) = received
    out = capsys.readouterr().out
    assert f"results logged to the model's run {settings.model}" in out
    assert f"MLflow run id: {settings.model}" in out  # the training run's
    assert trained == ["bco"] and settings.tracking.uri == mlflow_uri


def test_a_failed_evaluation_keeps_training_and_prints_the_retry(trained, evaluated,
                                                                 mlflow_uri, tmp_path, capsys):
    received, failing = evaluated
    failing.add("bco")

    assert run.main(["eval.benchmarks=mt_bench", *EXTERNAL, f"tracking.uri={mlflow_uri}"]) == 1

    (settings,) = received
    err = capsys.readouterr().err
    assert "evaluation failed: RuntimeError: judge server did not start" in err
    assert f"training succeeded: MLflow run {settings.model}" in err
    assert str(tmp_path / "bco" / "model") in err
    assert f"  {stage.retry_command(settings)}\n" in err
    assert MlflowClient(mlflow_uri).get_run(settings.model).info.status == "FINISHED"


def test_without_benchmarks_nothing_is_evaluated(trained, evaluated, mlflow_uri):
    received, _ = evaluated
    assert run.main([f"tracking.uri={mlflow_uri}"]) == 0
    assert trained == ["bco"] and received == []


def test_a_stage_that_could_not_start_stops_before_training(trained, capsys, tmp_path):
    words = ["eval.benchmarks=mt_bench", *HOSTED, f"eval.eval_python={tmp_path}/python"]
    assert run.main(words) == 2
    assert trained == []
    assert "make setup-eval" in capsys.readouterr().err


def test_a_sweep_evaluates_every_trained_policy(trained, evaluated, mlflow_uri, capsys):
    received, failing = evaluated
    failing.add("dpo")
    words = ["objective=bco,dpo", "eval.benchmarks=mt_bench", *EXTERNAL,
             f"tracking.uri={mlflow_uri}"]

    assert run.main(words) == 1  # training succeeded, one evaluation did not

    assert trained == ["bco", "dpo"] and len(received) == 2
    client = MlflowClient(mlflow_uri)
    bco, dpo = (client.get_run(settings.model) for settings in received)
    parent = client.get_run(bco.data.tags["mlflow.parentRunId"])
    table = json.loads(Path(client.download_artifacts(
        parent.info.run_id, "comparison/final_metrics.json")).read_text())
    assert table["final_metrics"]["bco"]["eval/mt_bench/score"] == 5.0
    assert "judge server did not start" in table["eval_failures"]["dpo"]
    assert parent.info.status == "FAILED"
    err = capsys.readouterr().err
    assert f"training succeeded: MLflow run {dpo.info.run_id}" in err
    assert stage.retry_command(received[1]) in err
