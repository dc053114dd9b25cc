"""Analysis metrics shared by the binary objectives (paper section 4 and appendix B)."""

from __future__ import annotations

import torch

from objectives import metrics
from objectives.base import BinaryLogps, Reducer, global_mean, global_mean_value


def implicit_rewards(batch: BinaryLogps, beta: float) -> torch.Tensor:
    """r = beta * (logp_policy - logp_reference), (batch,)."""
    if batch.reference_logps is None:
        raise ValueError(
            "this objective needs reference log-probs but the batch has none; "
            "the trainer must run the reference model (needs_reference = True)."
        )
    return beta * (batch.policy_logps - batch.reference_logps)


def binary_reward_metrics(
    rewards: torch.Tensor, batch: BinaryLogps, shift: torch.Tensor, reducer: Reducer
) -> dict[str, torch.Tensor]:
    """Per-step metrics of the paper's figures 3 and 4 over the global batch.

    ``shift`` is the classifier's threshold: delta for BCO, 0 for BCE, z_ref for KTO.
    """
    rewards = rewards.detach()
    up, down = batch.labels, ~batch.labels
    shifted = rewards - shift

    up_mean, _ = global_mean_value(rewards, reducer, up)
    down_mean, _ = global_mean_value(rewards, reducer, down)
    # Eq. 9 of appendix A.1: the bound is tight when exp(-(r_w - d)) + exp(r_l - d) is small.
    error_up, _ = global_mean_value(torch.exp(-shifted), reducer, up)
    error_down, _ = global_mean_value(torch.exp(shifted), reducer, down)
    correct = (shifted > 0) == batch.labels
    accuracy, _ = global_mean_value(correct.to(rewards.dtype), reducer)
    log_ratio = batch.policy_logps.detach() - batch.reference_logps.detach()
    kl, _ = global_mean_value(-log_ratio, reducer)

    return {
        metrics.REWARDS_UP: up_mean,
        metrics.REWARDS_DOWN: down_mean,
        metrics.ERROR_TERM: error_up + error_down,
        metrics.REWARDS_ACCURACY: accuracy,
        metrics.KL: kl,
    }


def classifier_loss(
    logits: torch.Tensor, batch: BinaryLogps, reducer: Reducer, class_weighting: str
) -> torch.Tensor:
    """Binary cross-entropy of thumbs-up vs thumbs-down with ``logits`` (batch,).

    Thumbs-up rows contribute ``-log sigma(logit)``, thumbs-down rows ``-log sigma(-logit)``.

    ``class_weighting="none"`` averages over every row of the global batch, each row weighted
    by the data stream's weight when present. ``"balanced"`` gives the two expectations of
    eq. 8 equal weight whatever the class counts: ``(E_up + E_down) / 2``. Both are halves
    of eq. 8 on balanced data, so the scale of the loss does not depend on the choice.
    """
    signs = torch.where(batch.labels, 1.0, -1.0).to(logits.dtype)
    losses = -torch.nn.functional.logsigmoid(signs * logits)
    weights = batch.weights if batch.weights is not None else torch.ones_like(losses)
    weights = weights.to(losses.dtype)

    if class_weighting == "none":
        return global_mean(losses, reducer, weights)
    if class_weighting == "balanced":
        up_loss = global_mean(losses, reducer, weights * batch.labels)
        down_loss = global_mean(losses, reducer, weights * ~batch.labels)
        return 0.5 * (up_loss + down_loss)
    raise ValueError(
        f"class_weighting {class_weighting!r} is not known (accepted: 'none', 'balanced')."
    )
