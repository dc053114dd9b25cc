"""Laying sequences out: padded, packed and with shared prompts, worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from platform.train.layout import layout_sequences, pack_rows

SEQUENCES = [np.array([5, 6, 7, 8, 9, 10]), np.array([11, 12, 13]), np.array([14, 15, 16, 17])]
PROMPT_LENGTHS = np.array([4, 1, 2])


def test_first_fit_decreasing_fills_rows_up_to_the_capacity():
    # Lengths 6, 3, 4, 2 into rows of 6: [6], [4, 2], [3].
    assert pack_rows([6, 3, 4, 2], 6) == [[0], [2, 3], [1]]
    rows = pack_rows([5, 1, 5, 1, 3, 3], 6)
    assert sorted(i for row in rows for i in row) == list(range(6))
    assert all(sum([5, 1, 5, 1, 3, 3][i] for i in row) <= 6 for row in rows)


def test_packed_layout_by_hand():
    batch = layout_sequences(SEQUENCES, PROMPT_LENGTHS, pad_token_id=0, layout="packed")
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
                             np.array([2, 1, 1]), pad_token_id=0, layout="packed")
    assert batch.input_ids.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 3], [0, 1, 0, 1]]
    assert batch.target_index.tolist() == [1, 2, 4, 6]
    assert batch.target_sequence.tolist() == [0, 0, 1, 2]


def test_padded_layout_matches_the_attention_mask():
    batch = layout_sequences(SEQUENCES, PROMPT_LENGTHS, pad_token_id=0, layout="padded")
    assert batch.attention_mask.sum(dim=1).tolist() == [6, 3, 4]
    assert batch.target_index.tolist() == [3, 4, 6, 7, 13, 14]




def test_shared_prompts_are_laid_out_once_with_a_tree_mask():
    # A pair: prompt [1, 2], chosen [3, 4], rejected [5]; and a lone sequence [7 | 8].
    batch = layout_sequences([np.array([1, 2, 3, 4]), np.array([1, 2, 5]), np.array([7, 8])],
                             np.array([2, 2, 1]), pad_token_id=0, layout="shared")
    # The pair's group is 2 + 2 + 1 = 5 tokens; the lone sequence (2) gets its own row.
    assert batch.input_ids.tolist() == [[1, 2, 3, 4, 5], [7, 8, 0, 0, 0]]
    # Both answers continue the prompt's positions.
    assert batch.position_ids.tolist() == [[0, 1, 2, 3, 2], [0, 1, 2, 3, 4]]
    # Token 3 and token 5 are both predicted at the prompt's last position (flat 1).
    assert batch.target_ids.tolist() == [3, 4, 5, 8]
    assert batch.target_index.tolist() == [1, 2, 1, 5]
    assert batch.target_sequence.tolist() == [0, 0, 1, 2]
    assert batch.num_tokens == 4 + 3 + 2  # as if every sequence had its own prompt
    visible = batch.attention_mask[0, 0].int().tolist()
    assert visible == [[1, 0, 0, 0, 0],
                       [1, 1, 0, 0, 0],
                       [1, 1, 1, 0, 0],
                       [1, 1, 1, 1, 0],
                       [1, 1, 0, 0, 1]]  # the rejected answer sees the prompt, not the chosen
    # Padding attends to itself only; real tokens never see it.
    assert batch.attention_mask[1, 0].int().tolist() == [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0],
                                                         [0, 0, 1, 0, 0], [0, 0, 0, 1, 0],
                                                         [0, 0, 0, 0, 1]]


def test_sequences_with_different_prompts_share_nothing():
    batch = layout_sequences([np.array([1, 2, 3]), np.array([1, 9, 3]), np.arange(4, 10)],
                             np.array([2, 2, 2]), pad_token_id=0, layout="shared")
    assert batch.input_ids.tolist() == [[4, 5, 6, 7, 8, 9], [1, 2, 3, 1, 9, 3]]
    visible = batch.attention_mask[1, 0]
    assert not visible[3:, :3].any()  # the second group never sees the first


def test_a_sequence_without_prompt_or_completion_is_refused():
    with pytest.raises(ValueError, match="sequence 1 has 3 tokens and a prompt of 3"):
        layout_sequences([np.array([1, 2]), np.array([1, 2, 3])], np.array([1, 3]), 0)
