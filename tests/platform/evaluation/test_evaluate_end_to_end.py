"""An evaluation on CPU, end to end and for real: vLLM generates, vLLM judges, MLflow keeps.

The tiny model (a training run's model, as ``platform.run`` leaves it) answers two
questions of each benchmark through vLLM in ``.venv-eval``, and judges them too, served
by the platform's own vLLM server. Its weights are random, so its judgments are
unparseable: the test checks that every judgment is made, accounted for (scored,
unparseable or failed) and logged to the run, not that the scores are good. Judge
prompts are longer than the tiny model's 1024 positions, so the server gets a longer
context (rotary positions extrapolate; vLLM needs VLLM_ALLOW_LONG_MAX_MODEL_LEN for it).
"""

from __future__ import annotations

import json
import math
import shutil
import sys

import pytest
from mlflow.tracking import MlflowClient

from platform import tracking
from platform.evaluation import eval_env
from platform.evaluation.judging import (
    N_FAILED,
    N_JUDGMENTS,
    N_QUESTIONS,
    N_SCORED,
    N_UNPARSEABLE,
    metric_key,
)
from platform.evaluation.runner import evaluate
from platform.evaluation.settings import BENCHMARKS, load_settings

pytestmark = pytest.mark.slow

JUDGE = "builtin:tiny-llama"
# Judgments per benchmark for 2 questions: both orders, both turns, one each (the random
# model never repeats the baseline's output), both games.
EXPECTED_JUDGMENTS = {"pairwise": 4, "mt_bench": 4, "alpaca_eval": 2, "arena_hard": 4}
SCORES = {"pairwise": ["pairwise/win_rate", "pairwise/win_rate_adjusted"],
          "mt_bench": ["mt_bench/score", "mt_bench/turn_1", "mt_bench/turn_2"],
          "alpaca_eval": ["alpaca_eval/win_rate", "alpaca_eval/length_controlled_winrate"],
          "arena_hard": ["arena_hard/score", "arena_hard/ci_lower", "arena_hard/ci_upper",
                         "arena_hard/avg_tokens"]}


@pytest.fixture(scope="module")
def eval_python():
    """The vLLM environment; missing, the test fails and says how to build it."""
    return eval_env.check_eval_python(eval_env.eval_python())


def test_evaluation_logs_every_benchmark_to_the_models_run(
        eval_python, ray_cluster, tiny_model_path, tmp_path, mlflow_uri, monkeypatch):
    monkeypatch.setenv("VLLM_ALLOW_LONG_MAX_MODEL_LEN", "1")
    run_dir = tmp_path / "outputs" / "bco-e2e"
    shutil.copytree(tiny_model_path, run_dir / "model")
    run_id = tracking.start_run(mlflow_uri, "bco-platform", "bco-e2e", {"objective": "bco"},
                                {"run_dir": str(run_dir)})
    config = load_settings([
        f"model={run_id}", "judge=hosted", f"judge.model_path={JUDGE}", "limit=2",
        "judge.max_model_len=4096",
        "generation.max_tokens=32", "judge.max_tokens=32", f"tracking.uri={mlflow_uri}",
        f"judge.cache_path={tmp_path / 'judgments.jsonl'}", "arena_hard.n_bootstrap=20"])

    outcome = evaluate(config)

    assert (outcome.run_id, outcome.new_run) == (run_id, False)
    assert "vllm" not in sys.modules  # vLLM ran in .venv-eval only
    run = MlflowClient(mlflow_uri).get_run(run_id)
    assert run.data.params["eval.judge.kind"] == "hosted"
    assert run.data.params["eval.judge.model"] == "tiny-llama"
    for name in BENCHMARKS:
        _check_benchmark(name, run.data.metrics, MlflowClient(mlflow_uri), run_id, tmp_path)
    cached = (tmp_path / "judgments.jsonl").read_text().splitlines()
    # Every reply is cached (a failed request is not): Arena-Hard's second attempts add up
    # to one line per game.
    total = sum(EXPECTED_JUDGMENTS.values())
    assert total - EXPECTED_JUDGMENTS["alpaca_eval"] <= len(cached) <= total + \
        EXPECTED_JUDGMENTS["arena_hard"]


def _check_benchmark(name: str, metrics: dict[str, float], client: MlflowClient,
                     run_id: str, tmp_path) -> None:
    counts = {key: metrics[metric_key(f"{name}/{key}")]
              for key in (N_QUESTIONS, N_JUDGMENTS, N_SCORED, N_UNPARSEABLE, N_FAILED)}
    assert counts[N_QUESTIONS] == 2
    assert counts[N_JUDGMENTS] == EXPECTED_JUDGMENTS[name]
    if name != "alpaca_eval":
        assert counts[N_FAILED] == 0  # the hosted server answered every greedy request
    # AlpacaEval samples one token at temperature 1 and asks for its top-5 logprobs; with
    # random weights vLLM's server sometimes cannot encode them (-inf) and answers 400.
    # Nothing is dropped silently: every judgment is scored, unparseable or failed.
    assert counts[N_SCORED] + counts[N_UNPARSEABLE] + counts[N_FAILED] == counts[N_JUDGMENTS]
    for score in SCORES[name]:
        value = metrics[metric_key(score)]  # logged even when nothing could be scored
        assert math.isnan(value) or math.isfinite(value)
    folder = tmp_path / "artifacts" / name
    client.download_artifacts(run_id, f"eval/{name}", str(folder))
    answers = json.loads((folder / name / "answers.json").read_text())
    judgments = json.loads((folder / name / "judgments.json").read_text())
    assert len(answers) == 2 and len(judgments) == counts[N_JUDGMENTS]
    turns = 2 if name == "mt_bench" else 1
    assert all(len(a["generations"]) == turns and isinstance(a["generations"][0]["text"], str)
               for a in answers)
    statuses = [j["status"] for j in judgments]
    assert statuses.count("unparseable") == counts[N_UNPARSEABLE]
    assert all(j["error"] for j in judgments if j["status"] == "failed")
