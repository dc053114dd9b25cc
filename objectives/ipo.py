"""Identity Preference Optimisation: squared regression of the log-ratio margin to a target."""

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


class IPOObjective(Objective):
    r"""Identity Preference Optimisation, Azar et al. 2023 (arXiv:2310.12036), sampled IPO loss.

        L = E_{(x, y_w, y_l)}[(h(x, y_w, y_l) - 1 / (2 * beta))^2]
        h = (log pi(y_w|x) - log pi_ref(y_w|x)) / |y_w|
          - (log pi(y_l|x) - log pi_ref(y_l|x)) / |y_l|

    pi -> policy_chosen_logps / policy_rejected_logps, pi_ref -> reference_chosen_logps /
    reference_rejected_logps, |y_w| / |y_l| -> chosen_lengths / rejected_lengths, beta -> the
    paper's regularisation tau. Azar et al. write h with summed log-ratios; the log-ratios
    here are averaged over the completion tokens (the SPEC's choice), which keeps the target
    1 / (2 * beta) on the same scale whatever the completion lengths. The reward metrics use
    the summed implicit reward beta * log-ratio, like the other paired objectives.
    """

    data_shape = DataShape.PAIRED
    needs_reference = True

    def forward(self, batch: PreferenceLogps, reducer: Reducer) -> ObjectiveOutput:
        chosen_rewards, rejected_rewards = implicit_paired_rewards(batch, self.config.beta)

        h = _mean_token_log_ratio(
            batch.policy_chosen_logps, batch.reference_chosen_logps, batch.chosen_lengths
        ) - _mean_token_log_ratio(
            batch.policy_rejected_logps, batch.reference_rejected_logps, batch.rejected_lengths
        )
        loss = global_mean((h - 1 / (2 * self.config.beta)) ** 2, reducer)

        step_metrics = paired_reward_metrics(chosen_rewards, rejected_rewards, batch, reducer)
        return ObjectiveOutput(loss=loss, metrics=step_metrics)


def _mean_token_log_ratio(
    policy_logps: torch.Tensor, reference_logps: torch.Tensor, lengths: torch.Tensor
) -> torch.Tensor:
    """(log pi(y|x) - log pi_ref(y|x)) / |y|, (batch,)."""
    if bool((lengths <= 0).any()):
        raise ValueError(
            "IPO averages log-ratios over completion tokens but a completion length is "
            f"{lengths.min().item()}; every completion must have at least one token. "
            "Drop empty completions in the data stream."
        )
    return (policy_logps - reference_logps) / lengths
