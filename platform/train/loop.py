"""The training loop that every Ray Train worker runs.

Per micro-batch: pad the shard's rows, score the completions under the policy (DeepSpeed
engine) and the frozen reference, hand the log-probs to the objective with a reducer over
all workers, and back-propagate this worker's share of the global loss. Rank 0 sends one
flat dict of metrics per optimizer step to MLflow.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch

from objectives import metrics
from objectives.base import Objective, ObjectiveOutput
from platform import registry
from platform.config import RunConfig
from platform.data.tokenize import load_tokenizer
from platform.models.loading import attention_implementation, load_causal_lm
from platform.tracking import MetricLogger
from platform.train import checkpointing
from platform.train import engine as ds
from platform.train.batches import ADAPTERS, MISMATCHED, REFERENCE, REFERENCE_MISMATCHED, ROWS
from platform.train.layout import SequenceBatch
from platform.train.reduce import DistributedReducer
from platform.train.scoring import TokenScorer, choose_layout, completion_logps, probe

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerJob:
    """Everything a worker needs, built by the driver and pickled to every worker."""

    config: RunConfig
    policy_path: str
    reference_path: str
    total_steps: int
    tracking_uri: str
    run_id: str
    run_dir: str  # absolute; the final model goes to <run_dir>/model
    num_threads: int
    use_gpu: bool
    resume_dir: str | None = None  # a checkpoint folder to start from (resume_from=<dir>)


def train_loop_per_worker(loop_config: dict) -> None:
    """Entry point of ``TorchTrainer``; ``loop_config["job"]`` is a :class:`WorkerJob`."""
    import ray.train

    job: WorkerJob = loop_config["job"]
    rank = ray.train.get_context().get_world_rank()
    # Metrics are retried by the platform's sender; MLflow's own long retry loop would only
    # delay noticing that the server is back.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    _configure_logging(rank)
    ds.prepare_accelerator(job.use_gpu)
    torch.set_num_threads(job.num_threads)
    torch.manual_seed(job.config.train.seed)

    worker = WorkerTrainer(job, rank, ray.train.get_dataset_shard("train"))
    # After a worker failure Ray Train hands back the run's latest checkpoint.
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None and job.resume_dir:
        checkpoint = ray.train.Checkpoint.from_directory(job.resume_dir)
    worker.restore(checkpoint)
    final = worker.fit()
    worker.save_model()
    if job.config.checkpoint.every_steps:
        worker.save_checkpoint(final)  # the end of the run is a checkpoint too
    else:
        ray.train.report(final)


def _configure_logging(rank: int) -> None:
    level = logging.INFO if rank == 0 else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("platform").setLevel(level)
    logging.getLogger("objectives").setLevel(level)


class WorkerTrainer:
    """One worker's policy engine, reference model, objective and data shard."""

    def __init__(self, job: WorkerJob, rank: int, shard) -> None:
        import ray.train.torch

        self.job, self.rank, self.shard = job, rank, shard
        self.config = job.config
        self.device = ray.train.torch.get_device()
        self.objective: Objective = registry.build(
            self.config.objective, self.config.objective_config()
        )
        self.adapter = ADAPTERS[self.objective.data_shape]
        self.reducer = DistributedReducer()
        self.pad_token_id = load_tokenizer(job.policy_path).pad_token_id
        self.engine, self.scheduler, self.reference = self._build_models()
        self.tracker = MetricLogger(job.tracking_uri, job.run_id,
                                    Path(job.run_dir) / "unsent_metrics.jsonl") \
            if rank == 0 else None
        self.state = checkpointing.TrainerState(mlflow_run_id=job.run_id)

    def _build_models(self):
        model = self.config.model
        ds_config = ds.deepspeed_config(self.config.train, self.job.use_gpu)
        attention = attention_implementation(model.attn_implementation, self.job.use_gpu,
                                             ds_config["bf16"]["enabled"])
        policy = load_causal_lm(self.job.policy_path, model.trust_remote_code, attention)
        if model.gradient_checkpointing:
            policy.gradient_checkpointing_enable()
            policy.config.use_cache = False
        bf16 = ds_config["bf16"]["enabled"]
        found = probe(policy, self.device, bf16)
        schedule = ds.lr_factor(self.config.train, self.job.total_steps)
        engine, scheduler = ds.initialize_policy(
            TokenScorer(policy, found.output_where_scored), ds_config, schedule)

        reference, probed = None, [found]
        # Precomputed log-probs travel with the rows: no worker holds a reference then.
        if self.objective.needs_reference and model.reference_logps == "live":
            reference = load_causal_lm(self.job.reference_path, model.trust_remote_code,
                                       attention)
            probed.append(probe(reference, self.device, bf16))
            reference = TokenScorer(reference, probed[-1].output_where_scored)
            if reference_partitioned(self.config):
                reference = ds.initialize_reference(reference, ds_config)
            else:
                reference = reference.eval().requires_grad_(False)  # on device, by probe
        self.layout = choose_layout(self.config.train.layout, *probed)
        logger.info("sequence layout: %s", self.layout.value)
        return engine, scheduler, reference

    def restore(self, checkpoint) -> None:
        """Continue from a checkpoint: engine, objective, data position, RNG, MLflow step."""
        if checkpoint is None:
            return
        with checkpoint.as_directory() as folder:
            self.state = checkpointing.load(Path(folder), self.engine, self.rank)
        self.objective.load_state_dict(self.state.objective)
        checkpointing.restore_rng(self.state.rng)
        if self.tracker is not None:
            self.tracker.skip_logged_steps()
        logger.info("resumed at step %d (epoch %d, %d micro-batches into it)",
                    self.state.global_step, self.state.epoch, self.state.micro_batches_done)

    def fit(self) -> dict[str, float]:
        """Train until ``total_steps`` optimizer steps; returns the last step's metrics."""
        train = self.config.train
        last: dict[str, float] = {}
        while self.state.global_step < self.job.total_steps:
            batches = iter(self.shard.iter_batches(
                batch_size=train.micro_batch_size, batch_format="numpy", drop_last=True
            ))
            # The stream repeats its seeded order every epoch, so skipping the consumed
            # micro-batches puts a resumed worker exactly where the checkpoint left it.
            for _ in range(self.state.micro_batches_done):
                next(batches, None)
            stepped = self._run_epoch(batches)
            if self.state.global_step >= self.job.total_steps:
                return stepped or last
            if not stepped:
                raise RuntimeError(
                    f"epoch {self.state.epoch} yielded no complete optimizer step on rank "
                    f"{self.rank}; the data shard is smaller than one global batch."
                )
            last = stepped
            self.state.epoch += 1
            self.state.micro_batches_done = 0
        return last

    def _run_epoch(self, batches) -> dict[str, float]:
        last: dict[str, float] = {}
        sums: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros(()))
        micro_steps, tokens, started = 0, 0, time.perf_counter()
        while self.state.global_step < self.job.total_steps:
            if micro_steps == 0:
                step_lr = float(self.scheduler.get_last_lr()[0])  # the lr this update uses
            rows = next(batches, None)
            # Stop together: a worker whose shard ran out must not leave others in a collective.
            if not self.reducer.all_true(rows is not None, self.device):
                break
            output, num_tokens = self._micro_step(rows)
            _accumulate(sums, output, self.reducer)
            micro_steps, tokens = micro_steps + 1, tokens + num_tokens
            if micro_steps % self.config.train.grad_accum_steps:
                continue
            self.state.micro_batches_done += micro_steps
            last = self._finish_step(sums, micro_steps, tokens, started, step_lr)
            self._maybe_checkpoint(last)
            sums.clear()
            micro_steps, tokens, started = 0, 0, time.perf_counter()
        return last

    def _maybe_checkpoint(self, values: dict[str, float]) -> None:
        every = self.config.checkpoint.every_steps
        step = self.state.global_step
        if every and step % every == 0 and step < self.job.total_steps:
            self.save_checkpoint(values)

    def save_checkpoint(self, values: dict[str, float]) -> None:
        """Report a checkpoint to Ray Train (every worker calls this at the same step)."""
        import ray.train

        self.state.objective = self.objective.state_dict()
        self.state.rng = checkpointing.capture_rng()
        with tempfile.TemporaryDirectory() as folder:
            checkpointing.save(Path(folder), self.engine, self.state, self.rank)
            # One folder name for every worker: Ray Train merges their parts into it.
            ray.train.report(values, checkpoint=ray.train.Checkpoint.from_directory(folder),
                             checkpoint_dir_name=f"checkpoint_step{self.state.global_step:08d}")
        logger.info("checkpoint at step %d", self.state.global_step)

    def _micro_step(self, rows) -> tuple[ObjectiveOutput, int]:
        sequences, extras = self.adapter.collate(rows, self.pad_token_id, self.layout)
        sequences = sequences.to(self.device)
        policy_logps, lengths = completion_logps(self.engine, sequences)
        reference_logps = self._reference_logps(sequences, extras.pop(REFERENCE, None))
        num_tokens = sequences.num_tokens
        if ROWS in extras:  # mismatched pairs scored in the same pass, after the rows
            rows_count = extras.pop(ROWS)
            num_tokens = int(sequences.sequence_lengths[:rows_count].sum())
            extras["policy_mismatched_logps"] = policy_logps[rows_count:].detach()
            extras["reference_mismatched_logps"] = (
                None if reference_logps is None else reference_logps[rows_count:])
            policy_logps, lengths = policy_logps[:rows_count], lengths[:rows_count]
            reference_logps = None if reference_logps is None else reference_logps[:rows_count]
        elif MISMATCHED in extras:
            extras.update(self._mismatched_logps(extras.pop(MISMATCHED).to(self.device),
                                                 extras.pop(REFERENCE_MISMATCHED, None)))

        inputs = self.adapter.assemble(policy_logps, reference_logps, lengths, extras)
        output = self.objective(inputs, self.reducer)
        # The share convention (objectives.base): shares sum to the global loss, and
        # DeepSpeed averages gradients over workers, so scale back by the world size.
        self.engine.backward(output.loss * self.reducer.world_size)
        self.engine.step()
        return output, num_tokens

    def _mismatched_logps(self, sequences: SequenceBatch,
                          precomputed: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Both models on mismatched pairs; no gradient (KTO's reference point is detached)."""
        with torch.no_grad():
            policy_logps, _ = completion_logps(self.engine, sequences)
        return {"policy_mismatched_logps": policy_logps,
                "reference_mismatched_logps": self._reference_logps(sequences, precomputed)}

    def _reference_logps(self, sequences: SequenceBatch,
                         precomputed: torch.Tensor | None) -> torch.Tensor | None:
        """The reference's log-probs: precomputed ones travel with the rows."""
        if precomputed is not None:
            return precomputed.to(self.device)
        if self.reference is None:
            return None
        with torch.no_grad():
            logps, _ = completion_logps(self.reference, sequences)
        return logps

    def _finish_step(self, sums, micro_steps: int, tokens: int, started: float,
                     lr: float) -> dict[str, float]:
        self.state.global_step += 1
        values = {key: float(total) / micro_steps for key, total in sums.items()}
        elapsed = time.perf_counter() - started
        global_tokens = float(self.reducer.sum(torch.tensor(float(tokens))))
        values[metrics.TOKENS_PER_S] = global_tokens / max(elapsed, 1e-9)
        values[metrics.LEARNING_RATE] = lr
        values[metrics.EPOCH] = float(self.state.epoch)
        values.update(self._peak_memory())
        grad_norm = self.engine.get_global_grad_norm()
        if grad_norm is not None:
            values[metrics.GRAD_NORM] = float(grad_norm)
        if self.tracker is not None:
            self.tracker.log(values, step=self.state.global_step)
            logger.info("step %d/%d %s", self.state.global_step, self.job.total_steps,
                        _progress_line(values))
        return values

    def _peak_memory(self) -> dict[str, float]:
        """Peak memory of the most loaded worker so far (a collective)."""
        import resource

        peaks = [resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20]  # KiB -> GiB
        if self.device.type == "cuda":
            peaks.append(torch.cuda.max_memory_allocated(self.device) / 2**30)
        highest = self.reducer.max(torch.tensor(peaks, dtype=torch.float64, device=self.device))
        values = {metrics.PEAK_WORKER_RSS_GIB: float(highest[0])}
        if len(peaks) > 1:
            values[metrics.PEAK_DEVICE_GIB] = float(highest[1])
        return values

    def save_model(self) -> None:
        """Write the final policy in Hugging Face format and log it to MLflow (rank 0)."""
        state_dict = ds.gathered_state_dict(self.engine, self.config.train.zero_stage)
        if self.rank != 0:
            return
        model_dir = Path(self.job.run_dir) / "model"
        self.engine.module.causal_lm.save_pretrained(model_dir, state_dict=state_dict)
        load_tokenizer(self.job.policy_path).save_pretrained(model_dir)
        self.tracker.close()  # every step's metrics are in MLflow (or spilled, loudly)
        logger.info("saved the policy to %s; logging it to MLflow", model_dir)
        try:
            self.tracker.log_artifacts(str(model_dir), "model")
        except Exception as exc:  # the model is safe on disk; a lost upload must not fail
            logger.error("could not log the model to MLflow (%s); it is in %s. Log it "
                         "later with `mlflow artifacts log-artifacts --local-dir %s "
                         "--run-id %s --artifact-path model`", exc, model_dir, model_dir,
                         self.job.run_id)


def reference_partitioned(config: RunConfig) -> bool:
    """Whether the live reference runs under ZeRO-3 partitioning (model.reference_placement)."""
    placement = config.model.reference_placement
    return placement == "zero3" or (placement == "auto" and config.train.zero_stage == 3)


def _accumulate(sums: dict[str, torch.Tensor], output: ObjectiveOutput,
                reducer: DistributedReducer) -> None:
    # The loss is a share; its sum over workers is the micro-batch's global loss.
    sums[metrics.LOSS] = sums[metrics.LOSS] + reducer.sum(output.loss.float()).cpu()
    for key, value in output.metrics.items():
        sums[key] = sums[key] + value.detach().float().cpu()


_PROGRESS_KEYS = (metrics.LOSS, metrics.REWARDS_UP, metrics.REWARDS_DOWN,
                  metrics.REWARDS_CHOSEN, metrics.REWARDS_REJECTED, metrics.DELTA,
                  metrics.Z_REF, metrics.REWARDS_ACCURACY, metrics.TOKENS_PER_S)


def _progress_line(values: dict[str, float]) -> str:
    return " ".join(f"{key}={values[key]:.4g}" for key in _PROGRESS_KEYS if key in values)
