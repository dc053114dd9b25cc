"""Checkpoints through Ray Train: DeepSpeed engine state plus the trainer's own state.

Each worker writes into its own temporary folder: the DeepSpeed checkpoint (policy weights,
optimizer partition, learning-rate scheduler) under the tag ``engine`` and a
``trainer_state_rank<r>.pt`` with what DeepSpeed does not know: the step, the data
position, the objective's state (BCO's class means, KTO's statistics), the random number
generators and the MLflow run. ``ray.train.report`` merges the workers' folders into one
checkpoint in the run's storage; on restore every worker reads that merged folder.
"""

from __future__ import annotations

import logging
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

ENGINE_TAG = "engine"
STATE_FILE = "trainer_state_rank{rank}.pt"


@dataclass
class TrainerState:
    """Where a worker is, in a form that survives a restart."""

    global_step: int = 0  # optimizer steps done
    epoch: int = 1  # the epoch being trained, from 1
    micro_batches_done: int = 0  # micro-batches of that epoch already consumed
    objective: dict[str, torch.Tensor] = field(default_factory=dict)
    rng: dict[str, Any] = field(default_factory=dict)
    mlflow_run_id: str = ""


def capture_rng() -> dict[str, Any]:
    states = {"torch": torch.get_rng_state(), "python": random.getstate(),
              "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng(states: dict[str, Any]) -> None:
    if not states:
        return
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save(folder: Path, engine, state: TrainerState, rank: int) -> None:
    """Write this worker's part of a checkpoint into ``folder`` (every worker calls it)."""
    engine.save_checkpoint(str(folder), tag=ENGINE_TAG)  # a collective under ZeRO
    torch.save(asdict(state), folder / STATE_FILE.format(rank=rank))


def load(folder: Path, engine, rank: int) -> TrainerState:
    """Restore the engine from a merged checkpoint folder; returns the trainer state."""
    state_path = folder / STATE_FILE.format(rank=rank)
    if not state_path.is_file():
        found = sorted(p.name for p in folder.glob("trainer_state_rank*.pt"))
        raise ValueError(
            f"checkpoint {folder} has no state for worker rank {rank} (found {found}). "
            "Resume with the number of workers that wrote it (resources.num_workers)."
        )
    load_path, _ = engine.load_checkpoint(str(folder), tag=ENGINE_TAG,
                                          load_optimizer_states=True,
                                          load_lr_scheduler_states=True)
    if load_path is None:
        raise ValueError(f"checkpoint {folder} holds no DeepSpeed engine state under "
                         f"the tag {ENGINE_TAG!r}; it was not written by this platform.")
    # The checkpoint is ours (written by save above), so full unpickling is safe here.
    raw = torch.load(state_path, weights_only=False)
    return TrainerState(**raw)


def mlflow_run_of(folder: Path) -> str:
    """The MLflow run a checkpoint belongs to (rank 0's state names it)."""
    state_path = folder / STATE_FILE.format(rank=0)
    if not state_path.is_file():
        raise ValueError(
            f"{folder} is not a checkpoint of this platform (no {state_path.name}). Give a "
            "checkpoint folder written by a run, or the MLflow run id of that run."
        )
    return torch.load(state_path, weights_only=False)["mlflow_run_id"]
