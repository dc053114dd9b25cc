"""NCA against hand-worked numbers (Chen et al. 2024, pairwise loss)."""

from __future__ import annotations

import math

import torch
from torch.testing import assert_close

from objectives import metrics
from objectives.base import ObjectiveConfig, PreferenceLogps
from objectives.nca import NCAObjective

F64 = torch.float64


def _pairs(
    policy_chosen: list[float],
    reference_chosen: list[float],
    policy_rejected: list[float],
    reference_rejected: list[float],
) -> PreferenceLogps:
    lengths = torch.full((len(policy_chosen),), 3.0, dtype=F64)
    return PreferenceLogps(
        policy_chosen_logps=torch.tensor(policy_chosen, dtype=F64, requires_grad=True),
        policy_rejected_logps=torch.tensor(policy_rejected, dtype=F64, requires_grad=True),
        reference_chosen_logps=torch.tensor(reference_chosen, dtype=F64),
        reference_rejected_logps=torch.tensor(reference_rejected, dtype=F64),
        chosen_lengths=lengths,
        rejected_lengths=lengths,
    )


def _neg_log_sigmoid(x: float) -> float:
    return math.log(1 + math.exp(-x))


def test_loss_and_metrics_by_hand() -> None:
    # beta = 0.5: r_w = 0.5 * (-3 - -5) = 1, r_l = 0.5 * (-4 - -2) = -1
    # L = -log sigma(1) - 0.5 log sigma(-1) - 0.5 log sigma(1)
    #   = log(1 + e^-1) + 0.5 log(1 + e) + 0.5 log(1 + e^-1)  ~= 1.12652
    batch = _pairs([-3.0], [-5.0], [-4.0], [-2.0])

    out = NCAObjective(ObjectiveConfig(beta=0.5))(batch)

    expected = 1.5 * math.log(1 + math.exp(-1)) + 0.5 * math.log(1 + math.exp(1))
    assert_close(out.loss, torch.tensor(expected, dtype=F64))
    assert abs(expected - 1.12652) < 1e-5
    assert_close(out.metrics[metrics.REWARDS_MARGIN], torch.tensor(2.0, dtype=F64))
    assert_close(out.metrics[metrics.REWARDS_ACCURACY], torch.tensor(1.0, dtype=F64))
    assert_close(out.metrics[metrics.KL], torch.tensor(0.0, dtype=F64))  # log-ratios 2, -2


def test_mean_over_pairs_by_hand() -> None:
    # beta = 0.1: pair 1 r_w = 0.2, r_l = -0.1; pair 2 r_w = -0.3, r_l = 0.4
    batch = _pairs([-8.0, -1.0], [-10.0, 2.0], [-6.0, -3.0], [-5.0, -7.0])

    out = NCAObjective()(batch)

    def pair_loss(chosen: float, rejected: float) -> float:
        return (
            _neg_log_sigmoid(chosen)
            + 0.5 * _neg_log_sigmoid(-chosen)
            + 0.5 * _neg_log_sigmoid(-rejected)
        )

    expected = (pair_loss(0.2, -0.1) + pair_loss(-0.3, 0.4)) / 2
    assert_close(out.loss, torch.tensor(expected, dtype=F64))


def test_all_rewards_zero_gives_two_log_2() -> None:
    batch = _pairs([-3.0, -9.0], [-3.0, -9.0], [-4.0, -2.0], [-4.0, -2.0])

    out = NCAObjective()(batch)

    assert_close(out.loss, torch.tensor(2 * math.log(2), dtype=F64))
