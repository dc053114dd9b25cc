"""One measured run of either system: a subprocess, its peak memory, its per-step numbers.

Both systems are measured by the same rules, so that their ratio means something:

- ``tokens_per_s``: real (non-padding) tokens of the policy's sequences of one optimizer
  step over that step's wall-clock time, the median over the steps after the first (the
  first includes lazy set-up in both systems). The platform logs it per step
  (``train/tokens_per_s``); for TRL the runner counts each step's tokens and stamps its end.
- ``steps_s``: the time from the end of step 1 to the end of the last step, the training
  loop without its start-up.
- ``wall_s``: the whole command, start to exit (the platform's includes starting a local Ray
  cluster, the data pass, and saving and logging the model).
- ``peak_rss_gib``, ``peak_pss_gib``: the peak resident and proportional set sizes of the
  command's whole process tree (driver, Ray daemons and workers for the platform; the one
  Python process for TRL), as ``bench/process_tree.py`` samples them.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import sys
import tempfile
from pathlib import Path

import psutil

from bench import process_tree
from bench.compare import settings

logger = logging.getLogger(__name__)

_PLATFORM_STEP_KEYS = {"loss": "train/loss", "rewards_up": "rewards/up",
                       "rewards_down": "rewards/down", "rewards_chosen": "rewards/chosen",
                       "rewards_rejected": "rewards/rejected", "delta": "objective/delta"}


def measured(command: list[str], cwd: Path, timeout_s: float) -> dict:
    """Runs ``command`` as a user would (``bench/process_tree.py`` measures it)."""
    # Each run starts its own local Ray cluster, as a user's command does, even when the
    # calling process is attached to one.
    environment = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    environment.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return process_tree.measured(command, cwd, timeout_s, environment)


def run_platform(setting: settings.Setting, num_workers: int, timeout_s: float) -> dict:
    """Trains ``setting`` with ``python -m platform.run``; returns the common record."""
    with tempfile.TemporaryDirectory(prefix="compare-platform-") as folder:
        words = settings.platform_words(setting, num_workers, Path(folder))
        run = measured([sys.executable, "-m", "platform.run", *words], settings.REPO,
                       timeout_s)
        record = _base_record("platform", setting, run)
        run_id = next((line.split(":", 1)[1].strip() for line in run["output"].splitlines()
                       if line.startswith("MLflow run id:")), None)
        if run["exit_code"] != 0 or run_id is None:
            return record
        record.update(_platform_metrics(f"sqlite:///{folder}/mlflow.db", run_id))
    record.update(mlflow_run_id=run_id, num_workers=num_workers)
    return record


def _platform_metrics(uri: str, run_id: str) -> dict:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)

    def history(key: str) -> list:
        return sorted(client.get_metric_history(run_id, key), key=lambda metric: metric.step)

    tokens = history("train/tokens_per_s")
    stamps = [metric.timestamp / 1000 for metric in tokens]
    values = {"step_tokens_per_s": [metric.value for metric in tokens],
              "steps_s": round(stamps[-1] - stamps[0], 2) if len(stamps) > 1 else None,
              "worker_peak_rss_gib": history("memory/peak_worker_rss_gib")[-1].value}
    for name, key in _PLATFORM_STEP_KEYS.items():
        series = [metric.value for metric in history(key)]
        if series:
            values[f"step_{name}"] = series
    return values


def run_trl(setting: settings.Setting, threads: int, timeout_s: float) -> dict:
    """Trains ``setting`` with TRL's trainer in its environment; returns the common record."""
    python = settings.trl_python(setting.objective)
    with tempfile.TemporaryDirectory(prefix="compare-trl-") as name:
        folder = Path(name)
        data = settings.write_trl_data(setting.objective, folder)
        spec = settings.trl_spec(setting, settings.resolve_model_path(setting.model), data,
                                 folder, threads)
        (folder / "spec.json").write_text(json.dumps(spec))
        # cwd is the temporary folder: the repository on sys.path would shadow `platform`.
        run = measured([str(python), str(settings.TRL_RUNNER), "spec.json", "result.json"],
                       folder, timeout_s)
        record = _base_record("trl", setting, run)
        if run["exit_code"] != 0:
            return record
        result = json.loads((folder / "result.json").read_text())
    record.update(_trl_metrics(result))
    return record


def _trl_metrics(result: dict) -> dict:
    ends = result["step_end_s"]
    starts = [result["train_begin_s"], *ends[:-1]]
    rates = [tokens / (end - start)
             for tokens, start, end in zip(result["step_tokens"], starts, ends, strict=True)]
    step_logs = [log for log in result["logs"] if "loss" in log]
    values = {"step_tokens_per_s": rates,
              "steps_s": round(ends[-1] - ends[0], 2) if len(ends) > 1 else None,
              "step_tokens": result["step_tokens"], "trl_version": result["trl_version"],
              "threads": result["threads"]}
    for name, key in {"loss": "loss", "rewards_chosen": "rewards/chosen",
                      "rewards_rejected": "rewards/rejected", "delta": "delta"}.items():
        series = [float(log[key]) for log in step_logs if key in log]
        if series:
            values[f"step_{name}"] = series
    return values


def _base_record(system: str, setting: settings.Setting, run: dict) -> dict:
    record = {"system": system, "objective": setting.objective, "model": setting.model,
              "reference": setting.reference, "steps": setting.steps,
              "rows_per_step": setting.rows_per_step, "exit_code": run["exit_code"],
              "wall_s": run["wall_s"], "peak_rss_gib": run["peak_rss_gib"],
              "peak_pss_gib": run["peak_pss_gib"],
              "load_average_1m": round(psutil.getloadavg()[0], 2)}
    if run["exit_code"] != 0:
        record["error"] = run["output"].splitlines()[-15:]
        logger.error("%s %s failed:\n%s", system, setting.label, "\n".join(record["error"]))
    return record


def steady_tokens_per_s(record: dict) -> float | None:
    """The median tokens per second over the steps after the first (all, for one step)."""
    rates = record.get("step_tokens_per_s") or []
    if not rates:
        return None
    return statistics.median(rates[1:] or rates)
