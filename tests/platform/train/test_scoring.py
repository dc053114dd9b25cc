"""Scoring completions: packed and padded layouts, the output layer where scored, the probe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from platform.models.loading import load_causal_lm
from platform.train.batches import layout_sequences, pack_rows
from platform.train.scoring import TokenScorer, completion_logps, probe

SEQUENCES = [np.array([5, 6, 7, 8, 9, 10]), np.array([11, 12, 13]), np.array([14, 15, 16, 17])]
PROMPT_LENGTHS = np.array([4, 1, 2])


@pytest.fixture(scope="module")
def tiny_lm(tiny_model_path):
    torch.manual_seed(0)
    return load_causal_lm(tiny_model_path, False).eval()


def test_first_fit_decreasing_fills_rows_up_to_the_capacity():
    # Lengths 6, 3, 4, 2 into rows of 6: [6], [4, 2], [3].
    assert pack_rows([6, 3, 4, 2], 6) == [[0], [2, 3], [1]]
    rows = pack_rows([5, 1, 5, 1, 3, 3], 6)
    assert sorted(i for row in rows for i in row) == list(range(6))
    assert all(sum([5, 1, 5, 1, 3, 3][i] for i in row) <= 6 for row in rows)


def test_packed_layout_by_hand():
    batch = layout_sequences(SEQUENCES, PROMPT_LENGTHS, pad_token_id=0, packed=True)
    # Rows of width 6, first-fit decreasing: sequence 0 (6 tokens) fills row 0, sequence 2
    # (4) opens row 1, sequence 1 (3) does not fit beside it (4 + 3 > 6) and opens row 2.
    assert batch.input_ids.tolist() == [[5, 6, 7, 8, 9, 10], [14, 15, 16, 17, 0, 0],
                                        [11, 12, 13, 0, 0, 0]]
    assert batch.attention_mask is None
    assert batch.position_ids.tolist() == [[0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5],
                                           [0, 1, 2, 3, 4, 5]]
    # Sequence 0 scores tokens 9, 10 (logits at columns 3, 4); sequence 2 scores 16, 17
    # (row 1, columns 1, 2); sequence 1 scores 12, 13 (row 2, columns 0, 1).
    assert batch.target_ids.tolist() == [9, 10, 16, 17, 12, 13]
    assert batch.target_index.tolist() == [3, 4, 7, 8, 12, 13]
    assert batch.target_sequence.tolist() == [0, 0, 2, 2, 1, 1]
    assert batch.num_tokens == 13 and batch.num_sequences == 3


def test_two_short_sequences_share_a_row_with_restarting_positions():
    batch = layout_sequences([np.array([1, 2, 3, 4]), np.array([5, 6]), np.array([7, 8])],
                             np.array([2, 1, 1]), pad_token_id=0, packed=True)
    assert batch.input_ids.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 3], [0, 1, 0, 1]]
    assert batch.target_index.tolist() == [1, 2, 4, 6]
    assert batch.target_sequence.tolist() == [0, 0, 1, 2]


def test_padded_layout_matches_the_attention_mask():
    batch = layout_sequences(SEQUENCES, PROMPT_LENGTHS, pad_token_id=0, packed=False)
    assert batch.attention_mask.sum(dim=1).tolist() == [6, 3, 4]
    assert batch.target_index.tolist() == [3, 4, 6, 7, 13, 14]


def test_packed_and_padded_give_the_same_logps(tiny_lm):
    scorer = TokenScorer(tiny_lm)
    with torch.no_grad():
        padded, padded_lengths = completion_logps(
            scorer, layout_sequences(SEQUENCES, PROMPT_LENGTHS, 0, packed=False))
        packed, packed_lengths = completion_logps(
            scorer, layout_sequences(SEQUENCES, PROMPT_LENGTHS, 0, packed=True))
    torch.testing.assert_close(packed, padded, atol=1e-5, rtol=0)
    assert packed_lengths.tolist() == padded_lengths.tolist() == [2, 2, 2]


def test_the_logps_equal_the_models_own_forward_pass(tiny_lm):
    """Summed completion log-probs worked from the plain HF forward, row by row."""
    with torch.no_grad():
        logps, _ = completion_logps(TokenScorer(tiny_lm),
                                    layout_sequences(SEQUENCES, PROMPT_LENGTHS, 0, True))
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
                             layout_sequences(SEQUENCES, PROMPT_LENGTHS, 0, True))
    finally:
        hook.remove()
    assert seen == [(6, tiny_lm.config.hidden_size)]  # 6 completion tokens, not 13 or 18


def test_gradients_reach_the_policy_through_the_packed_path(tiny_lm):
    scorer = TokenScorer(tiny_lm)
    logps, _ = completion_logps(scorer, layout_sequences(SEQUENCES, PROMPT_LENGTHS, 0, True))
    logps.sum().backward()
    grads = [p.grad for p in tiny_lm.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    tiny_lm.zero_grad(set_to_none=True)


def test_the_probe_accepts_a_llama():
    found = probe(_fresh(), seed=1)
    assert found.output_where_scored and found.packed_rows


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


def _fresh():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()
