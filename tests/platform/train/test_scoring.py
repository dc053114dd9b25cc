"""Scoring completions: every layout gives the same log-probs, the output layer runs where
scored, and the probe finds what a model supports."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from platform.models.loading import load_causal_lm
from platform.train.layout import Layout, layout_sequences
from platform.train.scoring import TokenScorer, choose_layout, completion_logps, probe

SEQUENCES = [np.array([5, 6, 7, 8, 9, 10]), np.array([11, 12, 13]), np.array([14, 15, 16, 17])]
PROMPT_LENGTHS = np.array([4, 1, 2])


@pytest.fixture(scope="module")
def tiny_lm(tiny_model_path):
    torch.manual_seed(0)
    return load_causal_lm(tiny_model_path, False).eval()


def test_packed_and_padded_give_the_same_logps(tiny_lm):
    scorer = TokenScorer(tiny_lm)
    with torch.no_grad():
        padded, padded_lengths = completion_logps(
            scorer, layout_sequences(SEQUENCES, PROMPT_LENGTHS, 0, Layout.PADDED))
        packed, packed_lengths = completion_logps(
            scorer, layout_sequences(SEQUENCES, PROMPT_LENGTHS, 0, Layout.PACKED))
    torch.testing.assert_close(packed, padded, atol=1e-5, rtol=0)
    assert packed_lengths.tolist() == padded_lengths.tolist() == [2, 2, 2]


def test_shared_prompts_give_the_logps_of_separate_sequences(tiny_lm):
    pair = [np.array([5, 6, 7, 8, 9]), np.array([5, 6, 7, 11, 12, 13]), np.array([5, 20, 21])]
    prompts = np.array([3, 3, 1])
    scorer = TokenScorer(tiny_lm)
    with torch.no_grad():
        padded, _ = completion_logps(scorer, layout_sequences(pair, prompts, 0, Layout.PADDED))
        shared, lengths = completion_logps(scorer,
                                           layout_sequences(pair, prompts, 0, Layout.SHARED))
    torch.testing.assert_close(shared, padded, atol=1e-5, rtol=0)
    assert lengths.tolist() == [2, 3, 2]


def test_shared_prompts_under_the_eager_kernel(tiny_model_path):
    pair = [np.array([5, 6, 7, 8, 9]), np.array([5, 6, 7, 11, 12, 13])]
    model = load_causal_lm(tiny_model_path, False, attn_implementation="eager").eval()
    with torch.no_grad():
        padded, _ = completion_logps(TokenScorer(model),
                                     layout_sequences(pair, np.array([3, 3]), 0, "padded"))
        shared, _ = completion_logps(TokenScorer(model),
                                     layout_sequences(pair, np.array([3, 3]), 0, "shared"))
    torch.testing.assert_close(shared, padded, atol=1e-5, rtol=0)


def test_the_logps_equal_the_models_own_forward_pass(tiny_lm):
    """Summed completion log-probs worked from the plain HF forward, row by row."""
    with torch.no_grad():
        logps, _ = completion_logps(TokenScorer(tiny_lm),
                                    layout_sequences(SEQUENCES, PROMPT_LENGTHS, 0, Layout.PACKED))
        for index, (tokens, prompt) in enumerate(zip(SEQUENCES, PROMPT_LENGTHS, strict=True)):
            logits = tiny_lm(input_ids=torch.as_tensor(tokens)[None]).logits[0]
            token_logps = logits.log_softmax(-1)[:-1].gather(
                -1, torch.as_tensor(tokens)[1:, None]).squeeze(-1)
            assert float(logps[index]) == pytest.approx(float(token_logps[prompt - 1:].sum()),
                                                        abs=1e-4)


def test_the_output_layer_runs_on_scored_positions_only(tiny_lm):
    seen = []
    hook = tiny_lm.get_output_embeddings().register_forward_hook(
        lambda module, args, output: seen.append(tuple(args[0].shape)))
    try:
        with torch.no_grad():
            completion_logps(TokenScorer(tiny_lm),
                             layout_sequences(SEQUENCES, PROMPT_LENGTHS, 0, Layout.PACKED))
    finally:
        hook.remove()
    assert seen == [(6, tiny_lm.config.hidden_size)]  # 6 completion tokens, not 13 or 18


def test_gradients_reach_the_policy_through_the_packed_path(tiny_lm):
    scorer = TokenScorer(tiny_lm)
    batch = layout_sequences(SEQUENCES, PROMPT_LENGTHS, 0, Layout.PACKED)
    logps, _ = completion_logps(scorer, batch)
    logps.sum().backward()
    grads = [p.grad for p in tiny_lm.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    tiny_lm.zero_grad(set_to_none=True)


def test_the_probe_accepts_a_llama():
    found = probe(_fresh(), seed=1)
    assert found.output_where_scored and found.packed_rows and found.shared_prompts
    assert choose_layout("auto", found) is Layout.SHARED
    assert choose_layout("padded", found) is Layout.PADDED


def test_the_probe_finds_logits_that_are_not_the_output_layer_alone():
    model = _fresh()
    original = model.forward

    def scaled(*args, **kwargs):  # as Cohere's models do: a logit scale after the output layer
        output = original(*args, **kwargs)
        output.logits = output.logits * 0.25
        return output

    model.forward = scaled
    found = probe(model)
    assert not found.output_where_scored
    assert found.packed_rows  # judged on the full forward pass


def test_the_probe_finds_a_model_that_ignores_position_ids():
    model = _fresh()
    decoder, original = model.get_decoder(), model.get_decoder().forward

    def without_positions(*args, position_ids=None, **kwargs):
        return original(*args, **kwargs)

    decoder.forward = without_positions
    original_model = model.forward
    model.forward = lambda *a, position_ids=None, **k: original_model(*a, **k)
    found = probe(model)
    assert found.output_where_scored and not found.packed_rows
    assert choose_layout("auto", found) is Layout.PADDED
    assert choose_layout("shared", found) is Layout.PADDED  # falls back, with a warning


def _fresh():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()
