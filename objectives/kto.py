"""Kahneman-Tversky Optimization: a sigmoid value of the reward against a reference point."""

from __future__ import annotations

import torch
from pydantic import Field

from objectives import metrics
from objectives.base import (
    BinaryLogps,
    DataShape,
    Objective,
    ObjectiveConfig,
    ObjectiveOutput,
    Reducer,
    global_mean,
    global_mean_value,
)
from objectives.binary import binary_reward_metrics, implicit_rewards


class KTOConfig(ObjectiveConfig):
    desirable_weight: float = Field(
        1.0, gt=0, description="lambda_D, the weight of thumbs-up rows in the loss (eq. 4)."
    )
    undesirable_weight: float = Field(
        1.0,
        gt=0,
        description=(
            "lambda_U, the weight of thumbs-down rows in the loss (eq. 4); the paper sets "
            "1.58 on HelpSteer2 to offset its 38 % thumbs-up share."
        ),
    )


class KTOObjective(Objective):
    r"""Kahneman-Tversky Optimization, Ethayarajh et al. 2024 (arXiv:2402.01306), as stated in
    Jung et al. 2024 (arXiv:2404.04656) eq. 2 to 4.

        L     = E_{D+}[lambda_D * (1 - sigma(r(x, y) - z_ref))]
              + E_{D-}[lambda_U * (1 - sigma(z_ref - r(x, y)))]                  (eq. 2, 4)
        z_ref = max(0, mean_{(x, y') in B} beta * (log pi(y'|x) - log pi_ref(y'|x)))  (eq. 3)
        r     = beta * (log pi(y|x) - log pi_ref(y|x))

    pi -> policy_logps, pi_ref -> reference_logps, D+ / D- -> label True / False,
    lambda_D / lambda_U -> desirable_weight / undesirable_weight, log pi(y'|x) /
    log pi_ref(y'|x) -> policy_mismatched_logps / reference_mismatched_logps (y' is the
    completion of another example of the batch, scored under this prompt), B -> the global
    batch. The expectation is one mean over all rows of the global batch, weighted by the
    data stream's weights when present.

    z_ref is a mean over every row of the global batch, all-reduced and detached, so all
    workers use the same value; the data stream's weights do not enter it (it estimates a
    KL divergence, not a loss). beta multiplies inside the max: r and z_ref share a scale.
    """

    data_shape = DataShape.BINARY
    needs_reference = True
    needs_mismatched_pairs = True
    config_cls = KTOConfig

    def forward(self, batch: BinaryLogps, reducer: Reducer) -> ObjectiveOutput:
        rewards = implicit_rewards(batch, self.config.beta)  # (batch,)
        z_ref = self._reference_point(batch, reducer)

        up_losses = self.config.desirable_weight * (1 - torch.sigmoid(rewards - z_ref))
        down_losses = self.config.undesirable_weight * (1 - torch.sigmoid(z_ref - rewards))
        losses = torch.where(batch.labels, up_losses, down_losses)
        loss = global_mean(losses, reducer, batch.weights)

        step_metrics = binary_reward_metrics(rewards, batch, z_ref, reducer)
        step_metrics[metrics.Z_REF] = z_ref
        return ObjectiveOutput(loss=loss, metrics=step_metrics)

    def _reference_point(self, batch: BinaryLogps, reducer: Reducer) -> torch.Tensor:
        """z_ref of eq. 3 over the global batch, detached."""
        if batch.policy_mismatched_logps is None or batch.reference_mismatched_logps is None:
            raise ValueError(
                "KTO needs the log-probs of mismatched completions (policy_mismatched_logps "
                "and reference_mismatched_logps) to compute z_ref, but the batch has none. "
                "The trainer must score, for each row, another row's completion under this "
                "row's prompt with both models (needs_mismatched_pairs = True)."
            )
        mismatched_rewards = self.config.beta * (
            batch.policy_mismatched_logps - batch.reference_mismatched_logps
        )
        mean_reward, _ = global_mean_value(mismatched_rewards, reducer)
        return mean_reward.clamp(min=0)
