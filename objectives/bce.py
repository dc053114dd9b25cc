"""Binary cross-entropy alignment: the BCO loss without the reward shift."""

from __future__ import annotations

from typing import Literal

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
)
from objectives.binary import binary_reward_metrics, classifier_loss, implicit_rewards


class BinaryClassifierConfig(ObjectiveConfig):
    class_weighting: Literal["none", "balanced"] = Field(
        "none",
        description=(
            "'none': mean over all rows (balance classes in the data stream, the paper's "
            "oversampling); 'balanced': equal weight of the thumbs-up and thumbs-down "
            "expectations of eq. 8 whatever the class counts."
        ),
    )


class BCEObjective(Objective):
    r"""Binary cross-entropy on the implicit reward, Jung et al. 2024 (arXiv:2404.04656), eq. 6.

        L = E_{D+}[-log sigma(r(x, y))] + E_{D-}[-log sigma(-r(x, y))]
        r(x, y) = beta * (log pi(y|x) - log pi_ref(y|x))

    Theorem 1 of the paper: this upper-bounds the DPO loss. pi -> policy_logps,
    pi_ref -> reference_logps, D+ / D- -> rows with label True / False.
    """

    data_shape = DataShape.BINARY
    needs_reference = True
    config_cls = BinaryClassifierConfig

    def forward(self, batch: BinaryLogps, reducer: Reducer) -> ObjectiveOutput:
        rewards = implicit_rewards(batch, self.config.beta)  # (batch,)
        zero = torch.zeros((), dtype=rewards.dtype, device=rewards.device)

        loss = classifier_loss(rewards, batch, reducer, self.config.class_weighting)

        step_metrics = binary_reward_metrics(rewards, batch, zero, reducer)
        step_metrics[metrics.DELTA] = zero
        return ObjectiveOutput(loss=loss, metrics=step_metrics)
