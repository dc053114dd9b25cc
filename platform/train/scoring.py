"""Log-probs of the scored (completion) tokens, with the output layer computed only there.

Only completion tokens are scored (SPEC section 2), and in alignment data prompts are two
to four times longer than completions. The output layer and its vocabulary-wide
log-softmax are a large share of a step on small and mid-sized models (a fifth of the
forward FLOPs of SmolLM2-135M, two fifths of the tiny recipe's model), so
:class:`TokenScorer` runs the decoder, gathers the hidden states of the scored positions
and applies the output layer to those alone.

That shortcut and the compact layouts (``platform.train.layout``) hold for a model only if
its logits are ``output_layer(last_hidden_state)``, it reads sequence boundaries from
restarting position ids (packed rows) and it takes a 4-D attention mask (shared prompts).
:func:`probe` checks each on the loaded model against its own plain forward pass of padded
rows; :func:`choose_layout` then picks the most compact layout the model passed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from platform.train.layout import Layout, SequenceBatch, layout_sequences

logger = logging.getLogger(__name__)

# Largest difference of a token's log-prob between two exact computations (packed rows and
# a gathered output layer reorder float sums): fp32, bf16. A wrong path differs by nats.
_PROBE_TOLERANCE = {torch.float32: 1e-3, torch.bfloat16: 0.15}


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
        if attention_mask is not None and attention_mask.dim() == 4:
            attention_mask = self._custom_mask(attention_mask)
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

    def _custom_mask(self, visible: torch.Tensor) -> torch.Tensor:
        """A 4-D boolean mask (True: may attend) in the form the attention kernel takes."""
        kernel = getattr(self.causal_lm.config, "_attn_implementation", None)
        if kernel == "sdpa":
            return visible
        if kernel == "eager":  # additive: 0 where visible, the dtype's minimum elsewhere
            dtype = self.causal_lm.get_output_embeddings().weight.dtype
            blocked = torch.zeros(visible.shape, dtype=dtype, device=visible.device)
            return blocked.masked_fill(~visible, torch.finfo(dtype).min)
        raise NotImplementedError(f"a 4-D attention mask for the {kernel} kernel")


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
    shared_prompts: bool  # a 4-D mask lets completions share one copy of their prompt


def probe(causal_lm: torch.nn.Module, device: torch.device | None = None,
          bf16: bool = False, seed: int = 0) -> Capabilities:
    """Scores a few random sequences padded and full (the model's own forward), then with
    the output layer where scored, in packed rows and with shared prompts, and compares.

    It runs where and how the run will (``device``, bf16), since a kernel may only exist
    there (FlashAttention-2 on a GPU, in bf16); the model is left on that device.
    """
    dtype = torch.bfloat16 if bf16 else torch.float32
    causal_lm.to(device or torch.device("cpu"), dtype)
    vocab = causal_lm.get_output_embeddings().weight.shape[0]
    generator = np.random.default_rng(seed)
    # Packed rows of 10: [10], [6 | 4], [3]; sequences 1 and 4 share their 2-token prompt.
    lengths, prompt_lengths = [10, 6, 4, 3, 5], np.array([4, 2, 3, 1, 2])
    sequences = [generator.integers(3, vocab, size=n) for n in lengths]
    sequences[4][:2] = sequences[1][:2]
    layouts = {layout: layout_sequences(sequences, prompt_lengths, 0, layout).to(
        causal_lm.device) for layout in Layout}

    was_training = causal_lm.training
    causal_lm.eval()
    try:
        with torch.no_grad():
            expected = _token_logps(causal_lm, layouts[Layout.PADDED], fast=False)
            fast = _close(_token_logps(causal_lm, layouts[Layout.PADDED], fast=True), expected,
                          dtype)
            found = {layout: _close(_token_logps(causal_lm, layouts[layout], fast), expected,
                                    dtype)
                     for layout in (Layout.PACKED, Layout.SHARED)}
    finally:
        causal_lm.train(was_training)
    if expected is None:
        logger.warning("%s: the layout check could not run the model (the debug log says "
                       "why); scoring padded rows through its full forward pass",
                       type(causal_lm).__name__)
    elif not fast:
        logger.warning("%s: its logits are not its output layer applied to the last hidden "
                       "state; scoring through its full forward pass (slower)",
                       type(causal_lm).__name__)
    return Capabilities(output_where_scored=fast, packed_rows=found[Layout.PACKED],
                        shared_prompts=found[Layout.SHARED])


def choose_layout(requested: str, *found: Capabilities) -> Layout:
    """The layout of a run (``train.layout``) for the models in ``found``: ``auto`` takes
    the most compact that every model passed; a requested one they did not pass falls
    back, with a warning."""
    supported = [Layout.PADDED]
    if all(f.packed_rows for f in found):
        supported.append(Layout.PACKED)
        if all(f.shared_prompts for f in found):
            supported.append(Layout.SHARED)
    if requested == "auto":
        return supported[-1]
    if Layout(requested) not in supported:
        logger.warning("train.layout=%s: the model does not support it (its probe fails); "
                       "using %s", requested, supported[-1].value)
        return supported[-1]
    return Layout(requested)


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


def _close(value: torch.Tensor | None, expected: torch.Tensor | None,
           dtype: torch.dtype) -> bool:
    if value is None or expected is None or value.shape != expected.shape:
        return False
    return bool((value - expected).abs().max() <= _PROBE_TOLERANCE[dtype])
