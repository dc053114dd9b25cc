"""Every objective on identical data as sibling MLflow runs, with the comparison artifact."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from objectives import metrics
from platform.config_loading import load_config
from platform.sweep import run_sweep, split_objectives

REPO = Path(__file__).resolve().parents[2]
ALL_OBJECTIVES = ["bco", "bce", "kto", "dpo", "ipo", "nca", "sft"]


def test_objective_lists_are_split_and_checked():
    assert split_objectives("bco, kto,dpo") == ["bco", "kto", "dpo"]
    with pytest.raises(ValueError, match="names an objective twice"):
        split_objectives("bco,bco")


def test_a_sweep_with_an_unknown_objective_starts_nothing():
    done = subprocess.run([sys.executable, "-m", "platform.run", "objective=bco,nope"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "objective 'nope' is not registered" in done.stderr


@pytest.mark.slow
def test_every_objective_trains_as_a_sibling_run(ray_cluster, tmp_path, mlflow_uri):
    words = ["recipe=tiny", "data.train=[builtin:arithmetic-pairs]", "train.max_steps=2",
             "train.micro_batch_size=4", f"tracking.uri={mlflow_uri}",
             f"train.output_dir={tmp_path}/out"]
    configs = [load_config([*words, f"objective={name}"]) for name in ALL_OBJECTIVES]
    result = run_sweep(configs)

    assert result.failures == {}
    client = MlflowClient(mlflow_uri)
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    for name in ALL_OBJECTIVES:
        child = client.get_run(result.child_run_ids[name])
        assert child.info.status == "FINISHED", name
        assert child.data.tags["mlflow.parentRunId"] == result.parent_run_id
        assert [m.step for m in client.get_metric_history(child.info.run_id,
                                                          metrics.LOSS)] == [1, 2], name
    kto = client.get_run(result.child_run_ids["kto"]).data.metrics
    assert metrics.Z_REF in kto and kto[metrics.Z_REF] >= 0.0
    dpo = client.get_run(result.child_run_ids["dpo"]).data.metrics
    assert metrics.REWARDS_MARGIN in dpo

    artifacts = {a.path for a in client.list_artifacts(result.parent_run_id, "comparison")}
    assert artifacts == {"comparison/analysis_curves.png", "comparison/final_metrics.json"}
    local = client.download_artifacts(result.parent_run_id, "comparison/final_metrics.json",
                                      str(tmp_path))
    table = json.loads(Path(local).read_text())
    assert sorted(table["final_metrics"]) == sorted(ALL_OBJECTIVES)
