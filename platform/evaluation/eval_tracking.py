"""Which model an evaluation reads and which MLflow run its results go to.

``model=`` names a Hugging Face folder, an MLflow run id or a ``builtin:`` model. A run
id reads the run's model (its ``run_dir``/model folder when it is on this machine, else
the logged ``model`` artifact); a folder written by a training run (``<run_dir>/model``)
is traced back to that run through its ``run_dir`` tag. Results go to that run; a model
that belongs to no run gets a new run in ``bco-platform-eval``.

MLflow params cannot change once written, so the judge's identity is checked against the
run's params before any work starts: evaluating a run again with another judge needs
``tracking.new_run=true``.
"""

from __future__ import annotations

import json
import logging
import math
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mlflow.entities import Metric, Param, ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from platform import tracking
from platform.evaluation.judging import BenchmarkResult
from platform.evaluation.settings import JudgeSettings, TrackingSettings

logger = logging.getLogger(__name__)

RUN_DIR_TAG = "run_dir"  # written by platform.train.run_handle
MODEL_ARTIFACT = "model"
EVALUATED_RUN_TAG = "eval.model_run_id"
EVALUATED_MODEL_TAG = "eval.model"
ARTIFACT_DIR = "eval"
_RUN_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class ModelRef:
    """A model to load and the run that produced it, if any."""

    path: str
    run_id: str | None


def resolve_model_ref(model: str, uri: str) -> ModelRef:
    """The folder to load for ``model`` and its training run (see the module docstring)."""
    from platform.models.builtin import BUILTIN_PREFIX, resolve_model

    if model.startswith(BUILTIN_PREFIX):
        return ModelRef(resolve_model(model), None)
    folder = Path(model).expanduser()
    if folder.exists():
        if not (folder / "config.json").is_file():
            raise ValueError(f"model {model!r} is not a Hugging Face model folder (no "
                             "config.json); give <run folder>/model or an MLflow run id.")
        folder = folder.resolve()
        return ModelRef(str(folder), run_of_model_folder(folder, uri))
    if _RUN_ID.fullmatch(model):
        return ModelRef(model_of_run(model, uri), model)
    raise ValueError(f"model {model!r} is neither an existing folder, an MLflow run id (32 "
                     "hex digits) nor a builtin: name; give one of those.")


def run_of_model_folder(folder: Path, uri: str) -> str | None:
    """The run whose ``run_dir`` tag is the folder's parent, if the store has one."""
    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    if not experiments:
        return None
    quoted = str(folder.parent).replace("'", "\\'")
    runs = client.search_runs(experiments, f"tags.{RUN_DIR_TAG} = '{quoted}'",
                              run_view_type=ViewType.ALL, max_results=2)
    if len(runs) > 1:
        logger.warning("several runs claim %s; results go to the latest, %s", folder,
                       runs[0].info.run_id)
    return runs[0].info.run_id if runs else None


def model_of_run(run_id: str, uri: str) -> str:
    """The model folder of a run: local when present, else the downloaded artifact."""
    client = MlflowClient(uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as error:
        raise ValueError(f"model={run_id!r}: no MLflow run with that id at {uri} ({error}); "
                         "set tracking.uri to the store that holds it.") from error
    local = Path(run.data.tags.get(RUN_DIR_TAG, "/nonexistent")) / MODEL_ARTIFACT
    if (local / "config.json").is_file():
        return str(local)
    from mlflow.artifacts import download_artifacts

    from platform.models.builtin import cache_root

    target = cache_root() / "eval" / "models" / run_id
    try:
        return download_artifacts(run_id=run_id, artifact_path=MODEL_ARTIFACT,
                                  dst_path=str(target), tracking_uri=uri)
    except (MlflowException, OSError) as error:
        raise ValueError(f"run {run_id} has no local model folder ({local}) and its "
                         f"'{MODEL_ARTIFACT}' artifact could not be read ({error}); the run "
                         "may have failed before saving its model.") from error


def judge_identity(settings: JudgeSettings, hosted_path: str | None) -> dict[str, str]:
    """What identifies the judge in the run's params: never the key or a password."""
    if settings.kind == "hosted":
        return {"eval.judge.kind": "hosted", "eval.judge.model": hosted_served_name(
            settings, hosted_path), "eval.judge.model_path": str(hosted_path)}
    parts = urlsplit(settings.base_url or "")
    host = parts.hostname or ""
    host = f"{host}:{parts.port}" if parts.port else host  # no user:password@
    return {"eval.judge.kind": "external", "eval.judge.host": host,
            "eval.judge.model": str(settings.model)}


def display_name(path: str) -> str:
    """A model folder's name; a trained model sits in <run>/model, so the run's name."""
    folder = Path(path)
    return folder.parent.name if folder.name == MODEL_ARTIFACT else folder.name


def hosted_served_name(settings: JudgeSettings, path: str | None) -> str:
    return settings.model or display_name(str(path))


def open_eval_run(ref: ModelRef, settings: TrackingSettings, uri: str,
                  params: dict[str, str], tags: dict[str, str]) -> tuple[str, bool]:
    """(run id, whether it is new); checks ``params`` against an existing run's first."""
    if ref.run_id is not None and not settings.new_run:
        existing = MlflowClient(uri).get_run(ref.run_id).data.params
        clashes = {k: (existing[k], v) for k, v in params.items()
                   if k in existing and existing[k] != v}
        if clashes:
            raise ValueError(
                f"run {ref.run_id} was evaluated before with other settings {clashes} "
                "((was, now)); MLflow params cannot change. Add tracking.new_run=true to "
                "log this evaluation into a new run tagged with the model's run id.")
        return ref.run_id, False
    name = f"eval-{display_name(ref.path)}"
    run_tags = {**tags, EVALUATED_MODEL_TAG: ref.path}
    if ref.run_id:
        run_tags[EVALUATED_RUN_TAG] = ref.run_id
    return tracking.start_run(uri, settings.experiment, name, {}, run_tags), True


def log_results(uri: str, run_id: str, params: dict[str, str], tags: dict[str, str],
                results: list[BenchmarkResult], summary: dict[str, Any]) -> None:
    """Scores and counts as metrics, records as JSON artifacts, the judge as params."""
    client = MlflowClient(uri)
    timestamp = int(time.time() * 1000)
    metrics = [Metric(key, value, timestamp, 0) for result in results
               for key, value in sorted(result.all_metrics().items())]
    client.log_batch(run_id, metrics=metrics, params=[Param(k, v) for k, v in params.items()])
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    with tempfile.TemporaryDirectory(prefix="eval-artifacts-") as folder:
        root = Path(folder)
        for result in results:
            _write_json(root / result.name / "answers.json", result.answers)
            _write_json(root / result.name / "judgments.json", result.judgments)
        _write_json(root / "summary.json", summary)
        client.log_artifacts(run_id, str(root), ARTIFACT_DIR)
    logger.info("logged %d metric(s) and the records of %d benchmark(s) to run %s",
                len(metrics), len(results), run_id)


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # NaN is written as null: JSON has no NaN, and readers choke on the bare token.
    path.write_text(json.dumps(_finite(value), indent=1, ensure_ascii=False), "utf-8")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value
