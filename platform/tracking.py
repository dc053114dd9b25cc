"""MLflow: one run per job. The driver opens and closes it; rank 0 logs step metrics.

Everything goes through an explicit ``MlflowClient(tracking_uri)`` rather than MLflow's
process-global active run, because the run is opened in the driver and written to from a
Ray worker in another process (possibly on another node).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient

from platform.metric_sender import MetricSender

logger = logging.getLogger(__name__)

_PARAM_BATCH = 100  # MLflow accepts at most 100 params per log_batch call


def resolve_tracking_uri(uri: str | None) -> str:
    """The configured URI, else ``MLFLOW_TRACKING_URI``, else a SQLite file in the cwd.

    A local default is made absolute here because Ray workers run in another directory.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


def is_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def experiment_id(client: MlflowClient, name: str, uri: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    artifact_location = None
    if is_local_store(uri):
        # Beside the store, absolute: artifacts land in one place whatever the cwd.
        store_dir = Path(uri.split(":///", 1)[-1]).parent if uri.startswith("sqlite") else Path.cwd()
        artifact_location = (store_dir.resolve() / "mlartifacts").as_uri()
    return client.create_experiment(name, artifact_location=artifact_location)


def start_run(uri: str, experiment: str, run_name: str | None, params: dict[str, Any],
              tags: dict[str, str]) -> str:
    """Create the run and log its params; returns the run id."""
    client = MlflowClient(uri)
    run = client.create_run(experiment_id(client, experiment, uri), run_name=run_name,
                            tags=tags)
    items = [Param(key, _param_text(value)) for key, value in sorted(params.items())]
    for start in range(0, len(items), _PARAM_BATCH):
        client.log_batch(run.info.run_id, params=items[start:start + _PARAM_BATCH])
    return run.info.run_id


def _param_text(value: Any) -> str:
    return str(value)[:6000]  # MLflow's limit on a param value


def finish_run(uri: str, run_id: str, succeeded: bool) -> None:
    status = RunStatus.FINISHED if succeeded else RunStatus.FAILED
    MlflowClient(uri).set_terminated(run_id, status=RunStatus.to_string(status))


def run_url_hint(uri: str, run_id: str) -> str:
    """How a person opens the run in the MLflow UI."""
    client = MlflowClient(uri)
    experiment = client.get_run(run_id).info.experiment_id
    path = f"#/experiments/{experiment}/runs/{run_id}"
    if uri.startswith(("http://", "https://")):
        return f"open {uri.rstrip('/')}/{path}"
    return (f"run `mlflow ui --backend-store-uri {uri}` and open "
            f"http://127.0.0.1:5000/{path}")


class MetricLogger:
    """One flat dict of floats per optimizer step (rank 0 only), sent in the background.

    Delivery is ordered and retried (``platform.metric_sender``): a tracking server that
    goes away mid-run delays the metrics, never the training, and loses none of them.
    """

    def __init__(self, uri: str, run_id: str, spill_path: Path | None = None) -> None:
        self._client = MlflowClient(uri)
        self._run_id = run_id
        # Steps up to this one are in the run already: none yet, so step 0 (the data
        # counts logged before training) goes out too.
        self._logged_through = -1
        spill = spill_path or Path.cwd() / f"unsent_metrics_{run_id}.jsonl"
        self._sender = MetricSender(self._client, run_id, spill)

    def skip_logged_steps(self) -> None:
        """After a restart, steps the run already holds are not logged again: a step
        recomputed from the last checkpoint has the values it had before the failure."""
        from objectives import metrics

        history = self._client.get_metric_history(self._run_id, metrics.LOSS)
        self._logged_through = max((m.step for m in history), default=0)

    def log(self, values: dict[str, float], step: int) -> None:
        if step <= self._logged_through:
            return
        timestamp = int(time.time() * 1000)
        self._sender.send([Metric(key, float(value), timestamp, step)
                           for key, value in values.items()])

    def close(self) -> None:
        """Deliver everything queued (or spill it to a file, saying so)."""
        self._sender.close()

    def log_text(self, text: str, artifact_file: str) -> None:
        self._client.log_text(self._run_id, text, artifact_file)

    def set_tag(self, key: str, value: str) -> None:
        self._client.set_tag(self._run_id, key, value)

    def log_artifacts(self, local_dir: str, artifact_path: str) -> None:
        self._client.log_artifacts(self._run_id, local_dir, artifact_path)


def check_reachable(uri: str, timeout_s: float = 10.0) -> None:
    """Fail at start, not at step 1, when a tracking server cannot be reached."""
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    try:
        requests.get(f"{uri.rstrip('/')}/health", timeout=timeout_s).raise_for_status()
    except requests.RequestException as exc:
        raise ValueError(
            f"the MLflow tracking server at {uri} is unreachable ({type(exc).__name__}: "
            f"{exc}). Start it (deploy/README.md), fix tracking.uri, or leave tracking.uri "
            "unset to record the run in ./mlflow.db."
        ) from None
