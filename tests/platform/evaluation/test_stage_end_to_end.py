"""``platform.run`` with an eval stage, for real: the tiny recipe trains, then vLLM in
``.venv-eval`` answers two questions of two benchmarks with the trained policy, the tiny
model served by vLLM's server judges them, and everything lands in the training run.

The judge and generation settings are those of test_evaluate_end_to_end.py (the judge
gets a longer context than its 1024 positions, hence VLLM_ALLOW_LONG_MAX_MODEL_LEN).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from objectives import metrics
from platform import run
from platform.evaluation import eval_env
from platform.evaluation.judging import N_JUDGMENTS, N_QUESTIONS, metric_key
from platform.evaluation.settings import DEFAULT_EXPERIMENT

pytestmark = pytest.mark.slow

JUDGE = "builtin:tiny-llama"
# Judgments for 2 questions: pairwise judges both orders, MT-Bench both turns.
EXPECTED_JUDGMENTS = {"pairwise": 4, "mt_bench": 4}


@pytest.fixture(scope="module")
def eval_python():
    """The vLLM environment; missing, the test fails and says how to build it."""
    return eval_env.check_eval_python(eval_env.eval_python())


def test_training_then_evaluation_log_to_one_run(eval_python, ray_cluster, tmp_path,
                                                 mlflow_uri, monkeypatch, capsys):
    monkeypatch.setenv("VLLM_ALLOW_LONG_MAX_MODEL_LEN", "1")
    words = ["objective=bco", "recipe=tiny", "train.max_steps=2",
             f"train.output_dir={tmp_path}/out", f"tracking.uri={mlflow_uri}",
             "eval.benchmarks=pairwise,mt_bench", "eval.judge=hosted",
             f"eval.judge.model_path={JUDGE}", "eval.limit=2", "eval.judge.max_model_len=4096",
             "eval.generation.max_tokens=32", "eval.judge.max_tokens=32",
             f"eval.judge.cache_path={tmp_path / 'judgments.jsonl'}"]

    assert run.main(words) == 0

    client = MlflowClient(mlflow_uri)
    experiments = [experiment.name for experiment in client.search_experiments()]
    assert DEFAULT_EXPERIMENT not in experiments  # no run of its own for the evaluation
    (training,) = client.search_runs([client.get_experiment_by_name("bco-platform")
                                      .experiment_id])
    run_id = training.info.run_id
    assert f"results logged to the model's run {run_id}" in capsys.readouterr().out
    assert training.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run_id, metrics.LOSS)] == [1, 2]
    assert training.data.params["eval.judge.kind"] == "hosted"
    assert training.data.params["eval.judge.model"] == "tiny-llama"
    assert training.data.tags["eval.benchmarks"] == "pairwise,mt_bench"
    for name, judgments in EXPECTED_JUDGMENTS.items():
        assert training.data.metrics[metric_key(f"{name}/{N_QUESTIONS}")] == 2
        assert training.data.metrics[metric_key(f"{name}/{N_JUDGMENTS}")] == judgments
        folder = Path(client.download_artifacts(run_id, f"eval/{name}", str(tmp_path)))
        assert len(json.loads((folder / "answers.json").read_text())) == 2
        assert len(json.loads((folder / "judgments.json").read_text())) == judgments
    summary = json.loads(Path(client.download_artifacts(run_id, "eval/summary.json",
                                                        str(tmp_path))).read_text())
    assert summary["model_run_id"] == run_id
    assert summary["model"] == str(tmp_path / "out" / training.info.run_name / "model")
