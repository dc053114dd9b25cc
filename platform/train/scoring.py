"""Log-probs of the scored (completion) tokens, with the output layer computed only there.

Only completion tokens are scored (SPEC section 2), and in alignment data prompts are two
to four times longer than completions. The output layer and its vocabulary-wide
log-softmax are a large share of a step on small and mid-sized models (a fifth of the
forward FLOPs of SmolLM2-135M, two fifths of the tiny recipe's model), so
:class:`TokenScorer` runs the decoder, gathers the hidden states of the scored positions
and applies the output layer to those alone.

That shortcut, and packed (padding-free) rows, hold for a model only if its logits are
``output_layer(last_hidden_state)`` and it reads sequence boundaries from restarting
position ids. :func:`probe` checks both on the loaded model against its own plain forward
pass; a model that fails is scored through its full forward pass, or padded, with a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from platform.train.batches import SequenceBatch, layout_sequences

logger = logging.getLogger(__name__)

# Largest difference of a token's log-prob between two exact computations in fp32 (packed
# rows and a gathered output layer reorder float sums); a wrong path differs by whole nats.
_PROBE_TOLERANCE = 1e-3


class TokenScorer(torch.nn.Module):
    """A causal LM whose forward returns the log-prob of every scored token, (T,).

    It is the module DeepSpeed wraps, so the whole computation runs inside one forward of
    the engine (ZeRO-3 gathers each layer's weights as it runs it).
    """

    def __init__(self, causal_lm: torch.nn.Module, output_where_scored: bool = True) -> None:
        super().__init__()
        self.causal_lm = causal_lm
        self.output_where_scored = output_where_scored

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor,
                attention_mask: torch.Tensor | None, target_index: torch.Tensor,
                target_ids: torch.Tensor) -> torch.Tensor:
        inputs = {"input_ids": input_ids, "position_ids": position_ids,
                  "attention_mask": attention_mask, "use_cache": False}
        if self.output_where_scored:
            hidden = self.causal_lm.get_decoder()(**inputs).last_hidden_state  # (rows, w, h)
            hidden = hidden.flatten(0, 1).index_select(0, target_index)  # (T, hidden)
            logits = self.causal_lm.get_output_embeddings()(hidden)  # (T, vocab)
        else:
            logits = self.causal_lm(**inputs).logits  # (rows, width, vocab)
            logits = logits.flatten(0, 1).index_select(0, target_index)  # (T, vocab)
        logits = logits.float()  # fp32 for a stable log-softmax
        target_logits = logits.gather(-1, target_ids.unsqueeze(-1)).squeeze(-1)  # (T,)
        return target_logits - logits.logsumexp(dim=-1)


def completion_logps(scorer: torch.nn.Module,
                     batch: SequenceBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed completion log-probs, completion token counts), each (n,).

    ``scorer`` is a :class:`TokenScorer` or a DeepSpeed engine that wraps one.
    """
    token_logps = scorer(input_ids=batch.input_ids, position_ids=batch.position_ids,
                         attention_mask=batch.attention_mask,
                         target_index=batch.target_index, target_ids=batch.target_ids)
    logps = token_logps.new_zeros(batch.num_sequences)  # (n,)
    logps = logps.index_add(0, batch.target_sequence, token_logps)
    lengths = torch.bincount(batch.target_sequence, minlength=batch.num_sequences)
    return logps, lengths


@dataclass(frozen=True)
class Capabilities:
    """What :func:`probe` found a model to support."""

    output_where_scored: bool  # logits == output layer applied to the last hidden state
    packed_rows: bool  # restarting position ids separate packed sequences


def probe(causal_lm: torch.nn.Module, seed: int = 0) -> Capabilities:
    """Scores a few random sequences padded and full (the model's own forward), then with
    the output layer where scored and in packed rows, and compares."""
    vocab = causal_lm.get_output_embeddings().weight.shape[0]
    generator = np.random.default_rng(seed)
    # Rows of 10 when packed: [10], [6 | 4], [3]; the middle row holds two sequences.
    lengths, prompt_lengths = [10, 6, 4, 3], np.array([4, 2, 3, 1])
    sequences = [generator.integers(3, vocab, size=n) for n in lengths]
    padded = layout_sequences(sequences, prompt_lengths, pad_token_id=0, packed=False)
    packed = layout_sequences(sequences, prompt_lengths, pad_token_id=0, packed=True)

    was_training = causal_lm.training
    causal_lm.eval()
    try:
        with torch.no_grad():
            expected = _token_logps(causal_lm, padded, fast=False)
            fast = _close(_token_logps(causal_lm, padded, fast=True), expected)
            in_packed = _close(_token_logps(causal_lm, packed, fast=fast), expected)
    finally:
        causal_lm.train(was_training)
    name = type(causal_lm).__name__
    if not fast:
        logger.warning("%s: its logits are not its output layer applied to the last hidden "
                       "state; scoring through its full forward pass (slower)", name)
    if not in_packed:
        logger.warning("%s does not separate packed sequences by position ids; its rows "
                       "are padded instead (train.padding_free has no effect)", name)
    return Capabilities(output_where_scored=fast, packed_rows=in_packed)


def _token_logps(causal_lm: torch.nn.Module, batch: SequenceBatch,
                 fast: bool) -> torch.Tensor | None:
    """Each scored token's log-prob, in sequence order whatever the layout, or None."""
    try:
        token_logps = TokenScorer(causal_lm, output_where_scored=fast)(
            batch.input_ids, batch.position_ids, batch.attention_mask, batch.target_index,
            batch.target_ids)
        return token_logps[torch.argsort(batch.target_sequence, stable=True)]
    except (AttributeError, TypeError, NotImplementedError, RuntimeError) as exc:
        logger.debug("probe of %s (fast=%s) failed: %s", type(causal_lm).__name__, fast, exc)
        return None


def _close(value: torch.Tensor | None, expected: torch.Tensor | None) -> bool:
    if value is None or expected is None or value.shape != expected.shape:
        return False
    return bool((value - expected).abs().max() <= _PROBE_TOLERANCE)
