"""The contract between the trainer and an objective (SPEC section 2, "Plug-in contract").

An objective is a class registered under the entry-point group ``bco_platform.objectives``.
It declares:

- ``data_shape``: :attr:`DataShape.BINARY` (one completion and a thumbs-up/down label per
  row) or :attr:`DataShape.PAIRED` (a chosen and a rejected completion per row);
- ``needs_reference``: whether the frozen reference model must be run;
- ``config_cls``: a pydantic model of its options (validated when the run config loads);
- its state, through ``state_dict`` / ``load_state_dict`` (saved with every checkpoint).

The trainer computes the summed completion log-probs of each example and calls the
objective with a :class:`BinaryLogps` or :class:`PreferenceLogps` batch and a
:class:`Reducer`, the only door to the other workers. The objective returns an
:class:`ObjectiveOutput`. It never imports Ray, DeepSpeed or MLflow.

Loss convention. Each worker holds one shard of the global batch. ``ObjectiveOutput.loss``
is this worker's *share* of the global-batch loss: the shares of all workers add up to the
loss of the whole global batch, and their gradients add up to its gradient.
:meth:`Reducer.mean` builds such a share from per-example values. The trainer owns the
scaling that the data-parallel gradient average needs; objectives never see it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import torch
from pydantic import BaseModel, ConfigDict, Field


class DataShape(enum.StrEnum):
    """What one training row holds."""

    BINARY = "binary"  # prompt, completion, label (thumbs-up = True)
    PAIRED = "paired"  # prompt, chosen, rejected


class Reducer(Protocol):
    """Cross-worker reductions over the global batch.

    Every worker must make the same sequence of calls with tensors of the same shape, even
    when its local batch holds no example of a class: the calls are collectives.
    """

    world_size: int

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over all workers; detached, identical on every worker."""
        ...


class LocalReducer:
    """The reducer of a single process: the local batch is the global batch."""

    world_size = 1

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.detach().clone()


def global_mean(
    values: torch.Tensor, reducer: Reducer, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """This worker's share of the weighted mean of ``values`` over the global batch.

    ``values`` is (batch,) and differentiable; ``weights`` (batch,) is a bool mask or float
    weights (default: all ones). Returns ``sum(w * values) / global sum(w)``: summed over
    workers it is the global weighted mean. A global weight of zero gives a share of zero,
    still attached to the graph so that every worker runs the same backward pass.
    """
    weights = _as_weights(values, weights)
    global_weight = reducer.sum(weights.sum())
    return (values * weights).sum() / global_weight.clamp(min=torch.finfo(values.dtype).tiny)


def global_mean_value(
    values: torch.Tensor, reducer: Reducer, weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The detached global weighted mean of ``values`` and the global total weight.

    Used for metrics and for statistics such as BCO's class means. Returns
    ``(mean, total_weight)``; ``mean`` is 0 where ``total_weight`` is 0.
    """
    weights = _as_weights(values, weights)
    totals = reducer.sum(torch.stack([(values.detach() * weights).sum(), weights.sum()]))
    global_sum, global_weight = totals[0], totals[1]
    mean = torch.where(global_weight > 0, global_sum / global_weight.clamp(min=1e-12), 0.0)
    return mean, global_weight


def _as_weights(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return torch.ones_like(values)
    return weights.to(device=values.device, dtype=values.dtype)


@dataclass(frozen=True)
class BinaryLogps:
    """Summed completion log-probs of a batch of thumbs-up / thumbs-down rows."""

    policy_logps: torch.Tensor  # (batch,) sum of completion token log-probs under the policy
    reference_logps: torch.Tensor | None  # (batch,) same under the reference; None if unused
    labels: torch.Tensor  # (batch,) bool, True = thumbs-up
    completion_lengths: torch.Tensor  # (batch,) number of completion tokens
    weights: torch.Tensor | None = None  # (batch,) per-example loss weight from the data stream
    # (batch,) log-probs of a completion of another example under this prompt (KTO's z_ref)
    policy_mismatched_logps: torch.Tensor | None = None
    reference_mismatched_logps: torch.Tensor | None = None


@dataclass(frozen=True)
class PreferenceLogps:
    """Summed completion log-probs of a batch of (chosen, rejected) pairs."""

    policy_chosen_logps: torch.Tensor  # (batch,)
    policy_rejected_logps: torch.Tensor  # (batch,)
    reference_chosen_logps: torch.Tensor | None  # (batch,) None if the reference is unused
    reference_rejected_logps: torch.Tensor | None  # (batch,)
    chosen_lengths: torch.Tensor  # (batch,) number of chosen completion tokens
    rejected_lengths: torch.Tensor  # (batch,) number of rejected completion tokens


@dataclass
class ObjectiveOutput:
    """What an objective returns for one micro-batch.

    ``loss`` is this worker's share of the global-batch loss (module docstring).
    ``metrics`` maps namespaced keys (``objectives.metrics``) to detached scalar tensors
    that already describe the global batch, so any worker's copy can be logged.
    """

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)


class ObjectiveConfig(BaseModel):
    """Options every objective understands; subclass it to add more."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    beta: float = Field(
        0.1, gt=0, description="Weight of the pull toward the reference policy (paper: 0.1)."
    )


@dataclass(frozen=True)
class RowSample:
    """A sample of the training rows, for objectives that learn per-row weights."""

    prompts: list[str]
    completions: list[str]
    labels: list[bool]  # True = thumbs-up


class RowWeighter(Protocol):
    """Per-row loss weights, applied in the data stream (``BinaryLogps.weights``).

    It must pickle: the data stream runs it on Ray workers.
    """

    def __call__(self, prompts: list[str], labels: list[bool]) -> list[float]: ...


class Objective:
    """Base class of every objective, built-in or plug-in."""

    data_shape: ClassVar[DataShape]
    needs_reference: ClassVar[bool] = True
    # Set by KTO-style objectives: the trainer then also scores mismatched completions.
    needs_mismatched_pairs: ClassVar[bool] = False
    # Binary objectives that learn from one class alone (SFT) set this to False; the data
    # stream otherwise refuses input that lacks thumbs-up or thumbs-down rows.
    requires_both_labels: ClassVar[bool] = True
    config_cls: ClassVar[type[ObjectiveConfig]] = ObjectiveConfig

    def __init__(self, config: ObjectiveConfig | None = None) -> None:
        self.config = config if config is not None else self.config_cls()
        if not isinstance(self.config, self.config_cls):
            raise TypeError(
                f"{type(self).__name__} takes a {self.config_cls.__name__}, "
                f"got {type(self.config).__name__}. Build it with "
                f"{self.config_cls.__name__}(**options)."
            )

    @classmethod
    def fit_row_weights(cls, config: ObjectiveConfig, sample: RowSample) -> RowWeighter | None:
        """Optionally learn per-row loss weights from a sample of the training rows.

        Called once on the driver before training; the weighter returned then runs in the
        data stream. The default learns nothing (every row weighs 1).
        """
        return None

    def __call__(self, batch: Any, reducer: Reducer | None = None) -> ObjectiveOutput:
        return self.forward(batch, reducer if reducer is not None else LocalReducer())

    def forward(self, batch: Any, reducer: Reducer) -> ObjectiveOutput:
        raise NotImplementedError

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Training state to checkpoint; stateless objectives return an empty dict."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if state:
            raise ValueError(
                f"{type(self).__name__} keeps no state but the checkpoint holds "
                f"{sorted(state)}. Resume with the objective that wrote the checkpoint."
            )
