"""The example plug-in package trains through its entry point, like any third-party one."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from objectives import metrics
from platform import registry
from platform.config_loading import load_config
from platform.train.launcher import launch


def test_the_example_plugin_is_installed_from_its_own_distribution():
    entry = registry.discover().get("bco_udm")
    assert entry is not None, "install it: pip install --no-deps -e plugins/bco_udm"
    assert entry.distribution == "bco-udm"
    assert entry.target == "bco_udm.objective:BCOUDMObjective"


@pytest.mark.slow
def test_the_example_plugin_trains_through_the_entry_point(ray_cluster, tmp_path, mlflow_uri):
    config = load_config(["objective=bco_udm", "recipe=tiny", "train.max_steps=2",
                          "train.micro_batch_size=4", "loss.weight_clip_max=5",
                          f"tracking.uri={mlflow_uri}", f"train.output_dir={tmp_path}/out"])
    result = launch(config)

    client = MlflowClient(mlflow_uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["objective"] == "bco_udm"
    assert [m.step for m in client.get_metric_history(result.run_id, metrics.DELTA)] == [1, 2]
