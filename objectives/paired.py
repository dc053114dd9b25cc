"""Implicit rewards and per-step metrics shared by the paired objectives (DPO, IPO, NCA)."""

from __future__ import annotations

import torch

from objectives import metrics
from objectives.base import PreferenceLogps, Reducer, global_mean_value


def implicit_paired_rewards(
    batch: PreferenceLogps, beta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """r = beta * (logp_policy - logp_reference) of the chosen and the rejected completions.

    Returns ``(chosen_rewards, rejected_rewards)``, each (batch,) and differentiable.
    """
    if batch.reference_chosen_logps is None or batch.reference_rejected_logps is None:
        raise ValueError(
            "this objective needs reference log-probs of the chosen and rejected completions "
            "but the batch has none; the trainer must run the reference model "
            "(needs_reference = True)."
        )
    chosen_rewards = beta * (batch.policy_chosen_logps - batch.reference_chosen_logps)
    rejected_rewards = beta * (batch.policy_rejected_logps - batch.reference_rejected_logps)
    return chosen_rewards, rejected_rewards


def paired_reward_metrics(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    batch: PreferenceLogps,
    reducer: Reducer,
) -> dict[str, torch.Tensor]:
    """Reward metrics of the global batch of pairs, detached.

    ``rewards/margin`` is the mean of chosen minus rejected reward, ``rewards/accuracy`` the
    fraction of pairs whose margin is positive, and ``kl`` the estimate of appendix B:
    ``-mean(logp_policy - logp_reference)`` over the chosen and the rejected completions.
    """
    chosen_rewards, rejected_rewards = chosen_rewards.detach(), rejected_rewards.detach()
    margin = chosen_rewards - rejected_rewards

    chosen_mean, _ = global_mean_value(chosen_rewards, reducer)
    rejected_mean, _ = global_mean_value(rejected_rewards, reducer)
    accuracy, _ = global_mean_value((margin > 0).to(margin.dtype), reducer)

    # Each pair holds one chosen and one rejected completion, so the mean over all
    # completions is the mean over pairs of the two log-ratios' average.
    chosen_log_ratio = batch.policy_chosen_logps.detach() - batch.reference_chosen_logps
    rejected_log_ratio = batch.policy_rejected_logps.detach() - batch.reference_rejected_logps
    kl, _ = global_mean_value(-(chosen_log_ratio + rejected_log_ratio) / 2, reducer)

    return {
        metrics.REWARDS_CHOSEN: chosen_mean,
        metrics.REWARDS_REJECTED: rejected_mean,
        metrics.REWARDS_MARGIN: chosen_mean - rejected_mean,
        metrics.REWARDS_ACCURACY: accuracy,
        metrics.KL: kl,
    }
