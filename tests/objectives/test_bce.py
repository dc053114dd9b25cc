"""BCE against hand-worked numbers (Jung et al. 2024, eq. 6)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from objectives import metrics
from objectives.base import BinaryLogps
from objectives.bce import BCEObjective, BinaryClassifierConfig
from objectives.bco import BCOConfig, BCOObjective

F64 = torch.float64


def _rows(log_ratios: list[float], labels: list[bool]) -> BinaryLogps:
    """Rows whose policy logps exceed the reference logps (-10) by ``log_ratios``."""
    reference = torch.full((len(labels),), -10.0, dtype=F64)
    return BinaryLogps(
        policy_logps=(reference + torch.tensor(log_ratios, dtype=F64)).requires_grad_(),
        reference_logps=reference,
        labels=torch.tensor(labels),
        completion_lengths=torch.full((len(labels),), 5.0, dtype=F64),
    )


def _softplus(x: float) -> float:
    return math.log(1 + math.exp(x))  # -log sigma(-x)


def test_loss_and_metrics_by_hand() -> None:
    # beta = 0.1: rewards 0.2 (up), -0.1 (down), 0.3 (down)
    # up: -log sigma(0.2) = log(1 + e^-0.2); down: -log sigma(-r) = log(1 + e^r)
    batch = _rows([2.0, -1.0, 3.0], [True, False, False])

    out = BCEObjective()(batch)

    expected = (_softplus(-0.2) + _softplus(-0.1) + _softplus(0.3)) / 3
    assert_close(out.loss, torch.tensor(expected, dtype=F64))
    assert_close(out.metrics[metrics.DELTA], torch.tensor(0.0, dtype=F64))
    assert_close(out.metrics[metrics.REWARDS_UP], torch.tensor(0.2, dtype=F64))
    assert_close(out.metrics[metrics.REWARDS_DOWN], torch.tensor(0.1, dtype=F64))
    # r > 0 is "up": right, right, wrong
    assert_close(out.metrics[metrics.REWARDS_ACCURACY], torch.tensor(2 / 3, dtype=F64))
    error_term = math.exp(-0.2) + (math.exp(-0.1) + math.exp(0.3)) / 2
    assert_close(out.metrics[metrics.ERROR_TERM], torch.tensor(error_term, dtype=F64))
    assert_close(out.metrics[metrics.KL], torch.tensor(-4 / 3, dtype=F64))  # -(2 - 1 + 3) / 3


def test_balanced_class_weighting_by_hand() -> None:
    # (E_up + E_down) / 2 with one up row and two down rows
    batch = _rows([2.0, -1.0, 3.0], [True, False, False])

    out = BCEObjective(BinaryClassifierConfig(class_weighting="balanced"))(batch)

    expected = (_softplus(-0.2) + (_softplus(-0.1) + _softplus(0.3)) / 2) / 2
    assert_close(out.loss, torch.tensor(expected, dtype=F64))


@pytest.mark.parametrize("class_weighting", ["none", "balanced"])
def test_equals_bco_with_delta_zero(class_weighting: str) -> None:
    # BCO whose class means are 0 and seen, on a batch whose class means are 0.3 and -0.3:
    # the EMA moves them to 0.03 and -0.03, so delta stays 0.
    log_ratios, labels = [2.0, 4.0, -1.0, -5.0], [True, True, False, False]
    bce_batch, bco_batch = _rows(log_ratios, labels), _rows(log_ratios, labels)
    bco = BCOObjective(BCOConfig(class_weighting=class_weighting))
    zero, true = torch.zeros((), dtype=F64), torch.ones((), dtype=torch.bool)
    bco.load_state_dict({"up_mean": zero, "down_mean": zero, "up_seen": true, "down_seen": true})

    bce_out = BCEObjective(BinaryClassifierConfig(class_weighting=class_weighting))(bce_batch)
    bco_out = bco(bco_batch)
    bce_out.loss.backward()
    bco_out.loss.backward()

    assert_close(bco_out.metrics[metrics.DELTA], torch.tensor(0.0, dtype=F64))
    assert_close(bco_out.loss, bce_out.loss)
    assert_close(bco_batch.policy_logps.grad, bce_batch.policy_logps.grad)
    for key, value in bce_out.metrics.items():
        assert_close(bco_out.metrics[key], value)
