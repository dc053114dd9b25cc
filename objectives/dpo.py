"""Direct Preference Optimization: logistic loss on the implicit reward margin of a pair."""

from __future__ import annotations

import torch

from objectives.base import (
    DataShape,
    Objective,
    ObjectiveOutput,
    PreferenceLogps,
    Reducer,
    global_mean,
)
from objectives.paired import implicit_paired_rewards, paired_reward_metrics


class DPOObjective(Objective):
    r"""Direct Preference Optimization, Rafailov et al. 2023 (arXiv:2305.18290), eq. 7.

        L = E_{(x, y_w, y_l)}[-log sigma(r(x, y_w) - r(x, y_l))]
        r = beta * (log pi(y|x) - log pi_ref(y|x))

    pi -> policy_chosen_logps / policy_rejected_logps, pi_ref -> reference_chosen_logps /
    reference_rejected_logps, y_w / y_l -> chosen / rejected, r(x, y_w) - r(x, y_l) ->
    margin. The mean runs over the pairs of the global batch.
    """

    data_shape = DataShape.PAIRED
    needs_reference = True

    def forward(self, batch: PreferenceLogps, reducer: Reducer) -> ObjectiveOutput:
        chosen_rewards, rejected_rewards = implicit_paired_rewards(batch, self.config.beta)
        margin = chosen_rewards - rejected_rewards  # (batch,)

        loss = global_mean(-torch.nn.functional.logsigmoid(margin), reducer)

        step_metrics = paired_reward_metrics(chosen_rewards, rejected_rewards, batch, reducer)
        return ObjectiveOutput(loss=loss, metrics=step_metrics)
