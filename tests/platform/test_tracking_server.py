"""Training against an MLflow tracking server that is down at start or goes away mid-run."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from objectives import metrics
from platform.config_loading import load_config
from platform.metric_sender import MetricSender, resend
from platform.train.launcher import launch

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TrackingServer:
    """``mlflow server`` on loopback, stoppable and restartable on the same store."""

    def __init__(self, folder: Path) -> None:
        self.port = _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.store = f"sqlite:///{folder / 'server.db'}"
        self.artifacts = folder / "artifacts"
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 120) -> None:
        self.process = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--backend-store-uri", self.store, "--artifacts-destination",
             str(self.artifacts), "--workers", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.uri}/health", timeout=2).ok:
                    return
            except requests.RequestException:
                time.sleep(0.5)
        raise TimeoutError(f"mlflow server on {self.uri} did not start in {timeout_s} s")

    def stop(self) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=60)
            self.process = None


def test_unsent_metrics_are_spilled_and_can_be_sent_later(tmp_path):
    dead = MlflowClient(f"http://127.0.0.1:{_free_port()}")
    spill = tmp_path / "unsent.jsonl"
    sender = MetricSender(dead, "run-x", spill, max_backoff_s=0.2, drain_timeout_s=2)
    sender.send([Metric("train/loss", 0.5, 1000, 1), Metric("train/loss", 0.4, 2000, 2)])
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    sender.close()
    assert len(spill.read_text().splitlines()) == 2

    store = MlflowClient(f"sqlite:///{tmp_path / 'later.db'}")
    run = store.create_run(store.create_experiment("later"))
    spill.write_text(spill.read_text().replace("run-x", run.info.run_id))
    assert resend(spill, store) == 2
    history = store.get_metric_history(run.info.run_id, "train/loss")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.5), (2, 0.4)]


def test_an_unreachable_server_is_reported_at_start(tmp_path):
    config = load_config(["recipe=tiny", f"tracking.uri=http://127.0.0.1:{_free_port()}"])
    with pytest.raises(ValueError, match="tracking server at .* is unreachable"):
        launch(config)


@pytest.mark.slow
def test_training_outlives_a_server_outage_without_losing_a_step(ray_cluster, tmp_path):
    server = TrackingServer(tmp_path)
    server.start()
    steps = 6
    config = load_config(["recipe=tiny", f"train.max_steps={steps}", "train.micro_batch_size=4",
                          f"tracking.uri={server.uri}", f"train.output_dir={tmp_path}/out"])
    outcome: dict = {}
    runner = threading.Thread(target=lambda: outcome.update(result=launch(config)))
    runner.start()
    try:
        client = MlflowClient(server.uri)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            runs = client.search_runs([client.get_experiment_by_name(
                "bco-platform").experiment_id]) if client.get_experiment_by_name(
                "bco-platform") else []
            if runs and client.get_metric_history(runs[0].info.run_id, metrics.LOSS):
                break
            time.sleep(0.5)
        server.stop()  # the outage: training goes on, metrics queue up
        time.sleep(15)
        server.start()
        runner.join(timeout=900)
    finally:
        server.stop()
        server.start()

    run_id = outcome["result"].run_id
    client = MlflowClient(server.uri)
    assert client.get_run(run_id).info.status == "FINISHED"
    history = client.get_metric_history(run_id, metrics.LOSS)
    assert sorted(m.step for m in history) == list(range(1, steps + 1))
    server.stop()
