"""The trunk end to end: Ray Data -> Ray Train workers -> DeepSpeed -> BCO -> MLflow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from objectives import metrics
from platform.config_loading import load_config
from platform.train.launcher import launch

REPO = Path(__file__).resolve().parents[2]
PER_STEP_KEYS = [metrics.LOSS, metrics.REWARDS_UP, metrics.REWARDS_DOWN, metrics.DELTA,
                 metrics.ERROR_TERM, metrics.KL, metrics.REWARDS_ACCURACY,
                 metrics.LEARNING_RATE, metrics.TOKENS_PER_S]


def _safetensors(model_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    weights: dict[str, torch.Tensor] = {}
    for file in sorted(model_dir.glob("*.safetensors")):
        weights.update(load_file(file))
    return weights


@pytest.mark.slow
def test_tiny_recipe_trains_bco_and_logs_to_mlflow(ray_cluster, tmp_path, mlflow_uri,
                                                   tiny_model_path):
    config = load_config(["objective=bco", "recipe=tiny", "train.max_steps=3",
                          f"tracking.uri={mlflow_uri}", f"train.output_dir={tmp_path}/out",
                          "tracking.experiment=e2e"])
    result = launch(config)

    client = MlflowClient(mlflow_uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["objective"] == "bco" and run.data.params["train.max_steps"] == "3"
    for key in PER_STEP_KEYS:
        steps = [m.step for m in client.get_metric_history(result.run_id, key)]
        assert steps == [1, 2, 3], key
    # The data counts go in at step 0, before training.
    data_rows = client.get_metric_history(result.run_id, "data/input_rows")
    assert [(m.step, m.value > 0) for m in data_rows] == [(0, True)]
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"config", "model"} <= artifacts

    trained = _safetensors(Path(result.model_dir))
    initial = _safetensors(Path(tiny_model_path))
    assert trained.keys() == initial.keys()
    moved = [k for k in trained if not torch.equal(trained[k], initial[k])]
    assert len(moved) > len(trained) // 2, "the policy's parameters did not move"


@pytest.mark.slow
def test_malformed_row_fails_the_run_with_file_and_line(ray_cluster, tmp_path, mlflow_uri):
    data = tmp_path / "feedback.jsonl"
    rows = [{"prompt": "q", "completion": "a", "label": True}] * 3
    data.write_text("\n".join(json.dumps(r) for r in rows) + '\n{"prompt": "q", "label": 1}\n')
    config = load_config(["recipe=tiny", f"data.train=[{data}]", f"tracking.uri={mlflow_uri}",
                          f"train.output_dir={tmp_path}/out"])
    with pytest.raises(Exception, match=r"feedback\.jsonl:4: missing fields"):
        launch(config)
    client = MlflowClient(mlflow_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("bco-platform").experiment_id])
    assert run.info.status == "FAILED"
    assert "feedback.jsonl:4" in run.data.tags["error"]


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["objective=bcoo"], "objective 'bcoo' is not registered"),
        (["train.micro_batch_sise=4"], "unknown key 'train.micro_batch_sise'"),
    ],
)
def test_cli_refuses_bad_config_before_starting_anything(words, expected):
    done = subprocess.run([sys.executable, "-m", "platform.run", *words], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert expected in done.stderr


def test_cli_lists_objectives_with_their_distribution():
    done = subprocess.run([sys.executable, "-m", "platform.run", "--list-objectives"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    assert "bco        objectives.bco:BCOObjective" in done.stdout
    assert "bco-platform" in done.stdout
