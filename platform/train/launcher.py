"""The driver side of a training run: Ray, resources, the data stream and ``TorchTrainer``."""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import ray

from platform import registry
from platform.config import RunConfig

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
# What a local run does not ship to its workers (the working_dir is the repository).
WORKING_DIR_EXCLUDES = [".venv/", ".venv-*/", ".git/", "outputs/", "mlruns/", "mlartifacts/", "mlflow.db",
                        "**/__pycache__/", "*.egg-info/", ".pytest_cache/", ".ruff_cache/"]


@dataclass(frozen=True)
class Resources:
    num_workers: int
    use_gpu: bool
    cpus_per_worker: float
    torch_threads: int


def connect(address: str | None) -> None:
    """Join the Ray cluster the run belongs to, shipping this repository to its workers.

    Ray workers import the standard library ``platform`` before user code runs, so this
    package reaches them only on their path: the repository goes along as ``working_dir``.
    A driver started by ``ray job submit --working-dir`` already has one and inherits it.
    """
    if ray.is_initialized():
        return
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR"):
        ray.init(address=address or "auto", log_to_driver=True)
        return
    runtime_env = {"working_dir": str(REPO_ROOT), "excludes": WORKING_DIR_EXCLUDES,
                   "env_vars": _forwarded_env()}
    # Without an address a run starts its own local cluster ("local"), rather than joining
    # whichever cluster happens to run on the machine; "auto" joins that one explicitly.
    ray.init(address=address or os.environ.get("RAY_ADDRESS") or "local",
             runtime_env=runtime_env, log_to_driver=True)


def _forwarded_env() -> dict[str, str]:
    names = ("BCO_PLATFORM_CACHE", "HF_HOME", "HF_HUB_OFFLINE", "MLFLOW_TRACKING_URI",
             "TOKENIZERS_PARALLELISM", "DS_ACCELERATOR")
    return {name: os.environ[name] for name in names if name in os.environ}


def plan_resources(config: RunConfig) -> Resources:
    """Workers and their CPU share from what the cluster has.

    On a CPU cluster each worker gets a fraction of a CPU so that one CPU always stays free
    for the Ray Data stream: with every CPU taken by workers, the read tasks never run and
    the run hangs.
    """
    wanted = config.resources
    cluster = ray.cluster_resources()
    cpus = int(cluster.get("CPU", 1))
    gpus = int(cluster.get("GPU", 0))
    use_gpu = wanted.use_gpu if wanted.use_gpu is not None else gpus > 0
    if use_gpu and gpus == 0:
        raise ValueError(
            "resources.use_gpu=true but the Ray cluster has no GPU "
            f"(resources: {cluster}). Drop the override or join a cluster with GPUs."
        )
    # Beyond two CPUs one is left to the data stream outright: its tasks need a whole CPU
    # on one node, which fractions spread over several nodes would not leave.
    num_workers = wanted.num_workers or (gpus if use_gpu else (cpus if cpus <= 2 else cpus - 1))
    if wanted.cpus_per_worker is not None:
        per_worker = wanted.cpus_per_worker
    elif use_gpu:
        per_worker = 1.0
    else:
        # On a one-CPU cluster the workers reserve nothing and share the CPU with the stream.
        per_worker = min(1.0, (cpus - 1) / num_workers)
    left_for_data = cpus - num_workers * per_worker
    if left_for_data < 1:
        raise ValueError(
            f"the Ray cluster has {cpus} CPU(s) and {num_workers} training worker(s) would "
            f"reserve {per_worker:g} each, leaving {left_for_data:g} to the data stream; its "
            "tasks need a whole CPU, so the run would hang. Lower resources.num_workers or "
            "resources.cpus_per_worker, or join a cluster with more CPUs."
        )
    torch_threads = max(1, math.floor(cpus / num_workers)) if not use_gpu else 4
    return Resources(num_workers, use_gpu, round(per_worker, 3), torch_threads)


def objective_traits(name: str):
    """(data shape, requires both labels, needs mismatched pairs) of an objective."""
    cls = registry.load_class(name)
    return cls.data_shape, cls.requires_both_labels, cls.needs_mismatched_pairs


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    tracking_uri: str
    metrics: dict[str, float]
    model_dir: str


def launch(config: RunConfig, parent_run_id: str | None = None) -> TrainResult:
    """Train ``config`` end to end; the MLflow run is marked FAILED if anything raises.

    ``parent_run_id`` nests the run under another MLflow run (a sweep's parent);
    ``config.resume_from`` continues an earlier run from its latest checkpoint.
    """
    from platform import tracking
    from platform.models.builtin import resolve_model
    from platform.train.run_handle import open_run

    uri = tracking.resolve_tracking_uri(config.tracking.uri)
    tracking.check_reachable(uri)
    handle = open_run(config, uri, parent_run_id)
    try:
        logger.info("resolving model %s", config.model.name)
        policy_path = resolve_model(config.model.name)
        reference_path = resolve_model(config.model.reference or config.model.name)
        connect(config.resources.ray_address)
        result = _train(config, uri, handle, policy_path, reference_path)
    except BaseException as exc:
        _record_failure(uri, handle.run_id, exc)
        raise
    tracking.finish_run(uri, handle.run_id, succeeded=True)
    return result


def _train(config: RunConfig, uri: str, handle, policy_path: str,
           reference_path: str) -> TrainResult:
    import yaml
    from mlflow.tracking import MlflowClient
    from ray.train import CheckpointConfig, FailureConfig, ScalingConfig
    from ray.train import RunConfig as RayRunConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from platform.data.pipeline import build_stream, total_steps
    from platform.tracking import MetricLogger
    from platform.train.loop import WorkerJob, train_loop_per_worker
    from platform.train.sharding import DeterministicShards

    resources = plan_resources(config)
    shape, requires_both_labels, mismatched_pairs = objective_traits(config.objective)
    fit_row_weights = functools.partial(registry.load_class(config.objective).fit_row_weights,
                                        config.objective_config())
    stream, summary = build_stream(config.data, shape, policy_path, config.train.seed,
                                   config.objective, requires_both_labels, mismatched_pairs,
                                   fit_row_weights)
    precomputed = None
    if (registry.load_class(config.objective).needs_reference
            and config.model.reference_logps == "precomputed"):
        precomputed = precompute_reference(config, stream, summary, shape, policy_path,
                                           reference_path, resources.use_gpu)
        stream = precomputed.dataset
    train = config.train
    steps = total_steps(summary.train_rows, resources.num_workers, train.micro_batch_size,
                        train.grad_accum_steps, train.epochs, train.max_steps)
    setup_logger = MetricLogger(uri, handle.run_id, handle.run_dir / "unsent_metrics.jsonl")
    _log_setup(setup_logger, config, summary, resources, steps, yaml,
               resumed=handle.resume_dir is not None)
    if precomputed is not None:
        setup_logger.set_tag("reference_logps.cache", "hit" if precomputed.cache_hit else "miss")
        setup_logger.set_tag("reference_logps.folder", str(precomputed.folder))
        if handle.resume_dir is None:  # a resumed run holds its first pass's time
            setup_logger.log({"reference/precompute_s": precomputed.seconds}, step=0)
    setup_logger.close()
    logger.info("training %s on %d %s worker(s) (%.2f CPU each) for %d optimizer steps",
                config.objective, resources.num_workers, "GPU" if resources.use_gpu else "CPU",
                resources.cpus_per_worker, steps)

    job = WorkerJob(config=config, policy_path=policy_path, reference_path=reference_path,
                    total_steps=steps, tracking_uri=uri, run_id=handle.run_id,
                    run_dir=str(handle.run_dir), num_threads=resources.torch_threads,
                    use_gpu=resources.use_gpu, resume_dir=handle.resume_dir)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"job": job},
        scaling_config=ScalingConfig(
            num_workers=resources.num_workers, use_gpu=resources.use_gpu,
            resources_per_worker={"CPU": resources.cpus_per_worker},
        ),
        torch_config=TorchConfig(backend="nccl" if resources.use_gpu else "gloo"),
        run_config=RayRunConfig(
            name=handle.attempt, storage_path=handle.storage_path,
            failure_config=FailureConfig(max_failures=train.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=config.checkpoint.keep),
        ),
        datasets={"train": stream},
        dataset_config=DeterministicShards(),
    )
    trainer.fit()
    final = MlflowClient(uri).get_run(handle.run_id).data.metrics  # last value of each
    return TrainResult(handle.run_id, uri, dict(final), str(handle.run_dir / "model"))


def precompute_reference(config: RunConfig, stream, summary, shape, policy_path: str,
                         reference_path: str, use_gpu: bool):
    """The stream with the reference's log-probs, scored once or read from the cache
    (``platform.train.reference_logps``)."""
    from platform.data.tokenize import load_tokenizer
    from platform.models.builtin import cache_root
    from platform.train import reference_logps as ref
    from platform.train.engine import use_bf16

    cache_dir = config.model.reference_cache_dir
    if cache_dir and "://" in cache_dir:
        raise ValueError(
            f"model.reference_cache_dir={cache_dir!r}: precomputed reference log-probs are "
            "cached on a filesystem path (on a multi-node cluster, a mount every node "
            "sees), not an object-store URI. Give a directory path."
        )
    folder = Path(cache_dir).expanduser() if cache_dir else cache_root() / "reference_logps"
    weighted = "weight" in summary.columns
    bf16 = use_bf16(config.train, use_gpu)
    key = ref.CacheKey(
        fingerprint=summary.fingerprint, seed=config.train.seed,
        columns=tuple(summary.columns), reference=ref.model_identity(reference_path),
        bf16=bf16,
        weighting=(f"{config.objective}:{json.dumps(config.loss, sort_keys=True)}"
                   if weighted else None))
    return ref.cached_stream(
        stream, key, folder, summary.train_rows, reference_path=reference_path, shape=shape,
        pad_token_id=load_tokenizer(policy_path).pad_token_id,
        batch_size=config.train.micro_batch_size,
        plan=ref.plan_scoring(ray.cluster_resources(), use_gpu),
        trust_remote_code=config.model.trust_remote_code,
        attn_implementation=config.model.attn_implementation,
        layout=config.train.layout)


def _log_setup(tracker, config: RunConfig, summary, resources: Resources, steps: int,
               yaml, resumed: bool) -> None:
    name = f"config/resumed-{int(time.time())}.yaml" if resumed else "config/resolved.yaml"
    tracker.log_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), name)
    if resumed:
        return  # step 0's data counts are in the run already
    tracker.log({"data/input_rows": summary.input_rows, "data/bad_rows": summary.bad_rows,
                 "data/dropped_rows": summary.dropped_rows, "data/test_rows": summary.test_rows,
                 "data/pairs": summary.pairs, "data/thumbs_up": summary.binary_up,
                 "data/thumbs_down": summary.binary_down,
                 "data/long_prompts": summary.long_prompts,
                 "data/long_completions": summary.long_completions,
                 "data/train_rows_per_epoch": summary.train_rows,
                 "resources/num_workers": resources.num_workers,
                 "train/total_steps": steps}, step=0)
    # Two runs with the same fingerprint trained on the same processed data.
    tracker.set_tag("data.fingerprint", summary.fingerprint)
    if summary.quarantine:
        tracker.log_text(json.dumps(summary.quarantine, indent=1), "data/quarantine.json")


def _record_failure(uri: str, run_id: str, exc: BaseException) -> None:
    from mlflow.tracking import MlflowClient

    from platform import tracking

    try:
        MlflowClient(uri).set_tag(run_id, "error", f"{type(exc).__name__}: {exc}"[:5000])
        tracking.finish_run(uri, run_id, succeeded=False)
    except Exception:  # the original error matters more than a failed bookkeeping call
        logger.exception("could not mark MLflow run %s as failed", run_id)
