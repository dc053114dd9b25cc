"""DPO against hand-worked numbers (Rafailov et al. 2023, eq. 7)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from objectives import metrics
from objectives.base import DataShape, PreferenceLogps
from objectives.dpo import DPOObjective

F64 = torch.float64


def _pairs(
    policy_chosen: list[float],
    reference_chosen: list[float],
    policy_rejected: list[float],
    reference_rejected: list[float],
) -> PreferenceLogps:
    lengths = torch.full((len(policy_chosen),), 4.0, dtype=F64)
    return PreferenceLogps(
        policy_chosen_logps=torch.tensor(policy_chosen, dtype=F64, requires_grad=True),
        policy_rejected_logps=torch.tensor(policy_rejected, dtype=F64, requires_grad=True),
        reference_chosen_logps=torch.tensor(reference_chosen, dtype=F64),
        reference_rejected_logps=torch.tensor(reference_rejected, dtype=F64),
        chosen_lengths=lengths,
        rejected_lengths=lengths,
    )


def test_declares_paired_data_and_reference() -> None:
    assert DPOObjective.data_shape is DataShape.PAIRED
    assert DPOObjective.needs_reference


def test_loss_and_metrics_by_hand() -> None:
    # beta = 0.1
    # pair 1: r_w = 0.1 * (-10 - -12) = 0.2, r_l = 0.1 * (-11 - -10) = -0.1, margin 0.3
    # pair 2: r_w = 0.1 * (-5 - -4) = -0.1, r_l = 0.1 * (-6 - -7) = 0.1, margin -0.2
    batch = _pairs([-10.0, -5.0], [-12.0, -4.0], [-11.0, -6.0], [-10.0, -7.0])

    out = DPOObjective()(batch)

    # -log sigma(m) = log(1 + exp(-m))
    expected = (math.log(1 + math.exp(-0.3)) + math.log(1 + math.exp(0.2))) / 2
    assert_close(out.loss, torch.tensor(expected, dtype=F64))
    assert_close(out.metrics[metrics.REWARDS_CHOSEN], torch.tensor(0.05, dtype=F64))
    assert_close(out.metrics[metrics.REWARDS_REJECTED], torch.tensor(0.0, dtype=F64))
    assert_close(out.metrics[metrics.REWARDS_MARGIN], torch.tensor(0.05, dtype=F64))
    assert_close(out.metrics[metrics.REWARDS_ACCURACY], torch.tensor(0.5, dtype=F64))
    # log-ratios of the four completions: 2, -1 (chosen), -1, 1 (rejected); mean 0.25
    assert_close(out.metrics[metrics.KL], torch.tensor(-0.25, dtype=F64))


def test_gradient_by_hand() -> None:
    # d/d logp_w of -log sigma(m) / N = -sigma(-m) * beta / N, and the opposite for logp_l.
    batch = _pairs([-10.0, -5.0], [-12.0, -4.0], [-11.0, -6.0], [-10.0, -7.0])

    DPOObjective()(batch).loss.backward()

    sigma_neg = [1 / (1 + math.exp(0.3)), 1 / (1 + math.exp(-0.2))]  # sigma(-m)
    expected = torch.tensor([-s * 0.1 / 2 for s in sigma_neg], dtype=F64)
    assert_close(batch.policy_chosen_logps.grad, expected)
    assert_close(batch.policy_rejected_logps.grad, -expected)


def test_policy_equal_to_reference_gives_log_2() -> None:
    batch = _pairs([-3.0, -7.5], [-3.0, -7.5], [-4.0, -1.0], [-4.0, -1.0])

    out = DPOObjective()(batch)

    assert_close(out.loss, torch.tensor(math.log(2), dtype=F64))
    assert_close(out.metrics[metrics.REWARDS_ACCURACY], torch.tensor(0.0, dtype=F64))


def test_missing_reference_is_refused() -> None:
    batch = _pairs([-1.0], [-1.0], [-2.0], [-2.0])
    batch = PreferenceLogps(
        policy_chosen_logps=batch.policy_chosen_logps,
        policy_rejected_logps=batch.policy_rejected_logps,
        reference_chosen_logps=None,
        reference_rejected_logps=None,
        chosen_lengths=batch.chosen_lengths,
        rejected_lengths=batch.rejected_lengths,
    )

    with pytest.raises(ValueError, match="reference"):
        DPOObjective()(batch)
