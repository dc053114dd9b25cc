"""SFT against hand-worked numbers: token-mean NLL of thumbs-up completions."""

from __future__ import annotations

import math

import torch
from torch.testing import assert_close

from objectives.base import BinaryLogps, DataShape
from objectives.metrics import SFT_NLL
from objectives.sft import SFTObjective

F64 = torch.float64


def _rows(
    policy_logps: list[float],
    lengths: list[float],
    labels: list[bool],
    weights: list[float] | None = None,
) -> BinaryLogps:
    return BinaryLogps(
        policy_logps=torch.tensor(policy_logps, dtype=F64, requires_grad=True),
        reference_logps=None,
        labels=torch.tensor(labels),
        completion_lengths=torch.tensor(lengths),
        weights=None if weights is None else torch.tensor(weights, dtype=F64),
    )


def test_declares_binary_data_without_reference() -> None:
    assert SFTObjective.data_shape is DataShape.BINARY
    assert not SFTObjective.needs_reference


def test_token_mean_over_thumbs_up_rows_by_hand() -> None:
    # up rows: -6 over 3 tokens, -4 over 1 token; the thumbs-down row is ignored.
    # (6 + 4) / (3 + 1) = 2.5
    batch = _rows([-6.0, -100.0, -4.0], [3, 5, 1], [True, False, True])

    out = SFTObjective()(batch)
    out.loss.backward()

    assert_close(out.loss, torch.tensor(2.5, dtype=F64))
    assert_close(out.metrics[SFT_NLL], torch.tensor(2.5, dtype=F64))
    # d/d logp of -sum(logp) / 4 tokens
    assert_close(batch.policy_logps.grad, torch.tensor([-0.25, 0.0, -0.25], dtype=F64))


def test_data_stream_weights_multiply_tokens() -> None:
    # (1 * 6 + 3 * 4) / (1 * 3 + 3 * 1) = 18 / 6 = 3
    batch = _rows([-6.0, -100.0, -4.0], [3, 5, 1], [True, False, True], [1.0, 7.0, 3.0])

    out = SFTObjective()(batch)

    assert_close(out.loss, torch.tensor(3.0, dtype=F64))


def test_single_token_equals_its_nll() -> None:
    batch = _rows([math.log(0.25)], [1], [True])

    out = SFTObjective()(batch)

    assert_close(out.loss, torch.tensor(math.log(4), dtype=F64))


def test_no_thumbs_up_row_gives_zero_still_attached() -> None:
    batch = _rows([-3.0, -2.0], [2, 0], [False, False])

    out = SFTObjective()(batch)
    out.loss.backward()

    assert_close(out.loss, torch.tensor(0.0, dtype=F64))
    assert_close(batch.policy_logps.grad, torch.zeros(2, dtype=F64))


def test_thumbs_up_row_without_tokens_adds_nothing() -> None:
    batch = _rows([-6.0, 0.0], [3, 0], [True, True])

    out = SFTObjective()(batch)

    assert_close(out.loss, torch.tensor(2.0, dtype=F64))
