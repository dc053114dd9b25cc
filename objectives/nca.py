"""Noise Contrastive Alignment: per-completion classification of a pair against noise."""

from __future__ import annotations

from torch.nn.functional import logsigmoid

from objectives.base import (
    DataShape,
    Objective,
    ObjectiveOutput,
    PreferenceLogps,
    Reducer,
    global_mean,
)
from objectives.paired import implicit_paired_rewards, paired_reward_metrics


class NCAObjective(Objective):
    r"""Noise Contrastive Alignment, Chen et al. 2024 (arXiv:2402.05369), the pairwise NCA loss.

        L = E_{(x, y_w, y_l)}[-log sigma(r(x, y_w))
                              - 1/2 log sigma(-r(x, y_w)) - 1/2 log sigma(-r(x, y_l))]
        r = beta * (log pi(y|x) - log pi_ref(y|x))

    pi -> policy_chosen_logps / policy_rejected_logps, pi_ref -> reference_chosen_logps /
    reference_rejected_logps, y_w / y_l -> chosen / rejected. Unlike DPO, each reward enters
    on its own and not only through the margin: the first term raises the chosen reward, the
    other two pull both rewards down toward the reference. Contrasted with BCO in Jung et
    al. 2024 (arXiv:2404.04656) section 4.3.
    """

    data_shape = DataShape.PAIRED
    needs_reference = True

    def forward(self, batch: PreferenceLogps, reducer: Reducer) -> ObjectiveOutput:
        chosen_rewards, rejected_rewards = implicit_paired_rewards(batch, self.config.beta)

        losses = (
            -logsigmoid(chosen_rewards)
            - 0.5 * logsigmoid(-chosen_rewards)
            - 0.5 * logsigmoid(-rejected_rewards)
        )
        loss = global_mean(losses, reducer)

        step_metrics = paired_reward_metrics(chosen_rewards, rejected_rewards, batch, reducer)
        return ObjectiveOutput(loss=loss, metrics=step_metrics)
