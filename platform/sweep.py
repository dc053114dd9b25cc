"""Several objectives on identical data and seed, as sibling MLflow runs under one parent.

``python -m platform.run objective=bco,bce,kto,dpo recipe=tiny`` trains each objective in
turn with the same recipe and overrides, nests the runs under a parent run, and logs to the
parent a plot of the paper's analysis curves (figures 3 and 4: error term, KL estimate,
delta / z_ref over steps) and a table of each run's final metrics.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mlflow.tracking import MlflowClient

from objectives import metrics
from platform import tracking
from platform.config import RunConfig, flatten

if TYPE_CHECKING:
    from platform.evaluation.runner import EvalOutcome

logger = logging.getLogger(__name__)

# The paper's analysis curves: (metric key, panel title).
COMPARED_CURVES = [
    (metrics.ERROR_TERM, "error term (fig. 3)"),
    (metrics.KL, "KL estimate (fig. 4a)"),
    (metrics.DELTA, "BCO delta"),
    (metrics.Z_REF, "KTO z_ref (fig. 4b)"),
    (metrics.LOSS, "loss"),
    (metrics.REWARDS_ACCURACY, "reward accuracy"),
]


@dataclass
class SweepResult:
    parent_run_id: str
    tracking_uri: str
    child_run_ids: dict[str, str] = field(default_factory=dict)  # objective -> run id
    model_dirs: dict[str, str] = field(default_factory=dict)  # objective -> trained policy
    failures: dict[str, str] = field(default_factory=dict)  # objective -> error
    evaluations: dict[str, EvalOutcome] = field(default_factory=dict)  # objective -> its
    eval_failures: dict[str, str] = field(default_factory=dict)  # objective -> error


def split_objectives(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    if len(set(names)) != len(names):
        raise ValueError(f"objective list {value!r} names an objective twice; list each once.")
    return names


def run_sweep(configs: list[RunConfig]) -> SweepResult:
    """Train each config (one per objective) under a parent run, and evaluate each trained
    policy when the config has an eval stage; a failed child does not stop the others, and
    the parent is marked FAILED if any child failed to train or to be evaluated."""
    from platform.evaluation import stage
    from platform.train.launcher import launch

    first = configs[0]
    uri = tracking.resolve_tracking_uri(first.tracking.uri)
    names = [config.objective for config in configs]
    shared = {k: v for k, v in flatten(first).items() if k not in ("objective", "loss")}
    parent = tracking.start_run(uri, first.tracking.experiment, f"sweep-{'-'.join(names)}",
                                {**shared, "objectives": ",".join(names)},
                                tags={"sweep": "true"})
    result = SweepResult(parent, uri)
    for config in configs:
        logger.info("sweep: training %s (%d of %d)", config.objective,
                    names.index(config.objective) + 1, len(names))
        try:
            trained = launch(config, parent_run_id=parent)
        except Exception as exc:  # one objective failing must not lose the others' runs
            logger.error("sweep: %s failed: %s", config.objective, exc)
            result.failures[config.objective] = f"{type(exc).__name__}: {exc}"
            continue
        result.child_run_ids[config.objective] = trained.run_id
        result.model_dirs[config.objective] = trained.model_dir
        if stage.is_enabled(config):
            _evaluate_child(config, trained.run_id, uri, result)
    log_comparison(uri, parent, result)
    tracking.finish_run(uri, parent, succeeded=not (result.failures or result.eval_failures))
    return result


def _evaluate_child(config: RunConfig, run_id: str, uri: str, result: SweepResult) -> None:
    """The eval stage of one child; its scores join the run's final metrics."""
    from platform.evaluation import stage

    # TODO(#6): a hosted judge is loaded again for every child (about a minute on CPU).
    try:
        result.evaluations[config.objective] = stage.evaluate_trained_model(config, run_id,
                                                                            uri)
    except Exception as exc:  # the trained model stays; the other objectives still run
        logger.error("sweep: evaluating %s failed: %s", config.objective, exc)
        result.eval_failures[config.objective] = f"{type(exc).__name__}: {exc}"


def metric_histories(client: MlflowClient, run_ids: dict[str, str],
                     key: str) -> dict[str, list[tuple[int, float]]]:
    histories = {}
    for name, run_id in run_ids.items():
        points = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        if points:
            histories[name] = points
    return histories


def log_comparison(uri: str, parent_run_id: str, result: SweepResult) -> None:
    """The comparison plot and the final-metrics table, as artifacts of the parent run."""
    client = MlflowClient(uri)
    finals = {name: client.get_run(run_id).data.metrics
              for name, run_id in result.child_run_ids.items()}
    table = {"final_metrics": finals, "failures": result.failures,
             "eval_failures": result.eval_failures, "child_runs": result.child_run_ids}
    client.log_text(parent_run_id, json.dumps(table, indent=1, sort_keys=True),
                    "comparison/final_metrics.json")
    if not result.child_run_ids:
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "analysis_curves.png"
        plot_curves(client, result.child_run_ids, path)
        client.log_artifact(parent_run_id, str(path), "comparison")


def plot_curves(client: MlflowClient, run_ids: dict[str, str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt

    columns = 3
    rows = -(-len(COMPARED_CURVES) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.6 * rows))
    for axis, (key, title) in zip(axes.flat, COMPARED_CURVES, strict=False):
        histories = metric_histories(client, run_ids, key)
        for name, points in histories.items():
            steps, values = zip(*points, strict=True)
            axis.plot(steps, values, label=name, marker="o", markersize=2)
        axis.set_title(title)
        axis.set_xlabel("optimizer step")
        if histories:
            axis.legend(fontsize=8)
        else:
            axis.text(0.5, 0.5, "not logged by these objectives", ha="center",
                      transform=axis.transAxes, fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
