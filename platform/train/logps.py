"""Summed log-probabilities of completion tokens (SPEC section 2: prompt tokens masked)."""

from __future__ import annotations

import torch

from platform.train.batches import SequenceBatch


def completion_logps(
    model: torch.nn.Module, batch: SequenceBatch
) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed completion log-probs, completion token counts), each (n,).

    The logit at position t predicts token t + 1, so targets are the inputs shifted by one
    and the mask is the completion mask shifted the same way.
    """
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    logits = logits[:, :-1].float()  # (n, seq - 1, vocab); fp32 for a stable log-softmax
    targets = batch.input_ids[:, 1:]  # (n, seq - 1)
    mask = batch.completion_mask[:, 1:]  # (n, seq - 1) bool

    target_logits = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    token_logps = target_logits - logits.logsumexp(dim=-1)  # (n, seq - 1)

    logps = (token_logps * mask).sum(dim=-1)
    return logps, mask.sum(dim=-1)
