"""Binary Classifier Optimization: BCE on the implicit reward shifted by delta."""

from __future__ import annotations

import torch
from pydantic import Field

from objectives import metrics
from objectives.base import (
    BinaryLogps,
    DataShape,
    Objective,
    ObjectiveOutput,
    Reducer,
    global_mean_value,
)
from objectives.bce import BinaryClassifierConfig
from objectives.binary import binary_reward_metrics, classifier_loss, implicit_rewards


class BCOConfig(BinaryClassifierConfig):
    delta_ema_decay: float = Field(
        0.9,
        ge=0.0,
        lt=1.0,
        description=(
            "Decay of the moving average of the class mean rewards that define delta "
            "(0 uses the current global batch alone)."
        ),
    )


class BCOObjective(Objective):
    r"""Binary Classifier Optimization, Jung et al. 2024 (arXiv:2404.04656), eq. 7 and 8.

        L     = E_{D+}[-log sigma(r(x, y) - delta)] + E_{D-}[-log sigma(-(r(x, y) - delta))]
        delta = (E_{D+}[r(x, y)] + E_{D-}[r(x, y)]) / 2                        (eq. 7)
        r     = beta * (log pi(y|x) - log pi_ref(y|x))

    pi -> policy_logps, pi_ref -> reference_logps, D+ / D- -> label True / False.

    delta minimises the error term exp(-(r_w - delta)) + exp(r_l - delta) that separates
    the BCE bound from the DPO loss (theorem 4). Each call all-reduces the per-class reward
    sums and counts of the global batch, updates an exponential moving average of the two
    class means (a class absent from the global batch keeps its previous mean; a class
    never seen yet counts as 0, the reward of the policy at initialisation), and uses
    ``delta`` = the average of the two, detached. Every worker holds the same delta.
    """

    data_shape = DataShape.BINARY
    needs_reference = True
    config_cls = BCOConfig

    def __init__(self, config: BCOConfig | None = None) -> None:
        super().__init__(config)
        self.up_mean = torch.zeros((), dtype=torch.float64)  # EMA of E_{D+}[r]
        self.down_mean = torch.zeros((), dtype=torch.float64)  # EMA of E_{D-}[r]
        self.up_seen = torch.zeros((), dtype=torch.bool)
        self.down_seen = torch.zeros((), dtype=torch.bool)

    @property
    def delta(self) -> torch.Tensor:
        return (self.up_mean + self.down_mean) / 2

    def forward(self, batch: BinaryLogps, reducer: Reducer) -> ObjectiveOutput:
        rewards = implicit_rewards(batch, self.config.beta)  # (batch,)
        self._update_class_means(rewards, batch.labels, reducer)
        delta = self.delta.to(device=rewards.device, dtype=rewards.dtype)

        loss = classifier_loss(rewards - delta, batch, reducer, self.config.class_weighting)

        step_metrics = binary_reward_metrics(rewards, batch, delta, reducer)
        step_metrics[metrics.DELTA] = delta
        return ObjectiveOutput(loss=loss, metrics=step_metrics)

    def _update_class_means(
        self, rewards: torch.Tensor, labels: torch.Tensor, reducer: Reducer
    ) -> None:
        # Both reductions run on every worker, whatever its local labels: they are collectives.
        up_batch_mean, up_count = global_mean_value(rewards, reducer, labels)
        down_batch_mean, down_count = global_mean_value(rewards, reducer, ~labels)
        self.up_mean, self.up_seen = self._ema(self.up_mean, self.up_seen, up_batch_mean, up_count)
        self.down_mean, self.down_seen = self._ema(
            self.down_mean, self.down_seen, down_batch_mean, down_count
        )

    def _ema(
        self, mean: torch.Tensor, seen: torch.Tensor, batch_mean: torch.Tensor, count: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if count.item() == 0:
            return mean, seen
        batch_mean = batch_mean.detach().to("cpu", torch.float64)
        if not seen.item():
            return batch_mean, torch.ones((), dtype=torch.bool)
        decay = self.config.delta_ema_decay
        return decay * mean + (1 - decay) * batch_mean, seen

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            "up_mean": self.up_mean.clone(),
            "down_mean": self.down_mean.clone(),
            "up_seen": self.up_seen.clone(),
            "down_seen": self.down_seen.clone(),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        expected = {"up_mean", "down_mean", "up_seen", "down_seen"}
        if set(state) != expected:
            raise ValueError(
                f"BCO state must hold {sorted(expected)}, got {sorted(state)}. "
                "Resume from a checkpoint written by the bco objective."
            )
        self.up_mean = state["up_mean"].to(torch.float64)
        self.down_mean = state["down_mean"].to(torch.float64)
        self.up_seen = state["up_seen"].to(torch.bool)
        self.down_seen = state["down_seen"].to(torch.bool)
