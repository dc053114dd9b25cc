"""Opening a run, or reopening one to resume it.

A run owns a folder ``<train.output_dir>/<run name>`` holding its Ray Train storage
(``ray/attempt-<n>/checkpoint_*``: each start or resume is one Ray Train run, since Ray
Train never reuses a run name safely) and its final model (``model/``). The MLflow run
records that folder in the tag ``run_dir``, so ``resume_from=<MLflow run id>`` finds the
latest checkpoint, and ``resume_from=<checkpoint folder>`` finds the MLflow run.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from pathlib import Path

from mlflow.tracking import MlflowClient

from platform import tracking
from platform.config import RunConfig, flatten
from platform.train import checkpointing

logger = logging.getLogger(__name__)

RUN_DIR_TAG = "run_dir"


@dataclass(frozen=True)
class RunHandle:
    run_id: str  # MLflow
    run_dir: Path
    attempt: str  # the Ray Train run name of this start
    resume_dir: str | None  # the checkpoint to start from, if any

    @property
    def storage_path(self) -> str:
        return str(self.run_dir / "ray")


def open_run(config: RunConfig, uri: str, parent_run_id: str | None) -> RunHandle:
    """A new MLflow run, or the one ``config.resume_from`` names, reopened."""
    if config.resume_from:
        return _reopen(config, uri)
    name = f"{config.tracking.run_name or config.objective}-{uuid.uuid4().hex[:8]}"
    run_dir = Path(config.train.output_dir).expanduser().resolve() / name
    tags = {"objective": config.objective, "model": config.model.name,
            RUN_DIR_TAG: str(run_dir)}
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    run_id = tracking.start_run(uri, config.tracking.experiment, name, flatten(config), tags)
    logger.info("MLflow run %s (%s) in experiment %r at %s", run_id, name,
                config.tracking.experiment, uri)
    return RunHandle(run_id, run_dir, "attempt-1", None)


def _reopen(config: RunConfig, uri: str) -> RunHandle:
    target = Path(config.resume_from).expanduser()
    if target.is_dir():
        run_id, checkpoint = checkpointing.mlflow_run_of(target), target.resolve()
    else:
        run_id, checkpoint = config.resume_from, None
    client = MlflowClient(uri)
    try:
        run = client.get_run(run_id)
    except Exception as exc:  # MLflow raises its own exception types for a missing run
        raise ValueError(
            f"resume_from={config.resume_from!r}: no MLflow run {run_id!r} at {uri} "
            f"({exc}). Give a checkpoint folder or the id of a run in this tracking store "
            "(tracking.uri)."
        ) from exc
    run_dir = Path(run.data.tags.get(RUN_DIR_TAG, ""))
    attempts = sorted((run_dir / "ray").glob("attempt-*")) if run_dir.name else []
    checkpoint = checkpoint or latest_checkpoint(run_dir)
    if checkpoint is None:
        raise ValueError(
            f"run {run_id} has no checkpoint under {run_dir / 'ray'}: it was started without "
            "checkpoint.every_steps. Start it again, with checkpoint.every_steps=N."
        )
    client.update_run(run_id, status="RUNNING")
    logger.info("resuming MLflow run %s from %s", run_id, checkpoint)
    return RunHandle(run_id, run_dir, f"attempt-{len(attempts) + 1}", str(checkpoint))


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint of any attempt of a run."""
    found = [path for path in run_dir.glob("ray/attempt-*/checkpoint_*") if path.is_dir()]
    return max(found, key=lambda path: path.stat().st_mtime) if found else None
