"""Which run an evaluation logs to, what it records about the judge, and how."""

from __future__ import annotations

import json
import math
import shutil

import pytest
from mlflow.tracking import MlflowClient

from platform import tracking
from platform.evaluation import eval_tracking
from platform.evaluation.judging import FAILED, SCORED, BenchmarkResult
from platform.evaluation.settings import JudgeSettings, TrackingSettings


@pytest.fixture
def trained(tmp_path, mlflow_uri, tiny_model_path):
    """A training run as platform.run leaves it: <run_dir>/model and the run_dir tag."""
    run_dir = tmp_path / "outputs" / "bco-1234"
    shutil.copytree(tiny_model_path, run_dir / "model")
    run_id = tracking.start_run(mlflow_uri, "bco-platform", "bco-1234", {"objective": "bco"},
                                {"run_dir": str(run_dir)})
    return run_id, run_dir / "model"


def test_a_model_folder_is_traced_to_its_training_run(trained, mlflow_uri):
    run_id, folder = trained
    ref = eval_tracking.resolve_model_ref(str(folder), mlflow_uri)
    assert ref == eval_tracking.ModelRef(str(folder), run_id)


def test_a_run_id_reads_the_runs_model_folder(trained, mlflow_uri):
    run_id, folder = trained
    assert eval_tracking.resolve_model_ref(run_id, mlflow_uri).path == str(folder)


def test_a_folder_of_no_run_and_bad_names(tmp_path, mlflow_uri, tiny_model_path):
    assert eval_tracking.resolve_model_ref(tiny_model_path, mlflow_uri).run_id is None
    with pytest.raises(ValueError, match="no MLflow run"):
        eval_tracking.resolve_model_ref("0" * 32, mlflow_uri)
    with pytest.raises(ValueError, match="neither an existing folder"):
        eval_tracking.resolve_model_ref("no/such/model", mlflow_uri)
    with pytest.raises(ValueError, match="no config.json"):
        eval_tracking.resolve_model_ref(str(tmp_path), mlflow_uri)


def test_the_judge_identity_never_holds_credentials():
    settings = JudgeSettings(base_url="https://user:pw@judge.example:8443/v1", model="gpt-4o",
                             api_key_env="JUDGE_KEY")
    identity = eval_tracking.judge_identity(settings, None)
    assert identity == {"eval.judge.kind": "external", "eval.judge.host": "judge.example:8443",
                        "eval.judge.model": "gpt-4o"}


def test_a_hosted_judge_is_named_after_its_run(tmp_path):
    settings = JudgeSettings(kind="hosted", model_path="x")
    identity = eval_tracking.judge_identity(settings, str(tmp_path / "bco-77" / "model"))
    assert identity["eval.judge.model"] == "bco-77"


def test_another_judge_on_the_same_run_needs_a_new_run(trained, mlflow_uri):
    run_id, folder = trained
    ref = eval_tracking.ModelRef(str(folder), run_id)
    first = {"eval.judge.kind": "external", "eval.judge.model": "gpt-4o"}
    assert eval_tracking.open_eval_run(ref, TrackingSettings(), mlflow_uri, first, {}) == (
        run_id, False)
    MlflowClient(mlflow_uri).log_param(run_id, "eval.judge.model", "gpt-4o")
    other = {**first, "eval.judge.model": "gpt-4-turbo"}
    with pytest.raises(ValueError, match="tracking.new_run=true"):
        eval_tracking.open_eval_run(ref, TrackingSettings(), mlflow_uri, other, {})
    new_id, is_new = eval_tracking.open_eval_run(ref, TrackingSettings(new_run=True),
                                                 mlflow_uri, other, {})
    tags = MlflowClient(mlflow_uri).get_run(new_id).data.tags
    assert is_new and tags[eval_tracking.EVALUATED_RUN_TAG] == run_id


def test_results_are_metrics_params_and_json_artifacts(trained, mlflow_uri, tmp_path):
    run_id, _ = trained
    result = BenchmarkResult(
        "mt_bench", {"mt_bench/score": math.nan}, 1,
        [{"question_id": 81, "generations": [{"text": "hi", "prompt_truncated": True}]}],
        [{"question_id": 81, "turn": 1, "status": SCORED, "score": -1.0},
         {"question_id": 81, "turn": 2, "status": FAILED, "error": "HTTP 400"}])
    eval_tracking.log_results(mlflow_uri, run_id, {"eval.judge.model": "j"},
                              {"eval.limit": "1"}, [result], {"score": math.nan})
    client = MlflowClient(mlflow_uri)
    run = client.get_run(run_id)
    assert math.isnan(run.data.metrics["eval/mt_bench/score"])
    assert run.data.metrics["eval/mt_bench/n_failed"] == 1.0
    assert run.data.metrics["eval/mt_bench/n_prompts_truncated"] == 1.0
    assert run.data.params["eval.judge.model"] == "j" and run.data.tags["eval.limit"] == "1"
    local = client.download_artifacts(run_id, "eval", str(tmp_path / "down"))
    judgments = json.loads((tmp_path / "down" / "eval" / "mt_bench" / "judgments.json")
                           .read_text())
    assert judgments[1]["error"] == "HTTP 400"
    assert json.loads((tmp_path / "down" / "eval" / "summary.json").read_text()) == {
        "score": None}  # NaN is written as null
    assert local.endswith("eval")
