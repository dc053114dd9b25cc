"""IPO against hand-worked numbers (Azar et al. 2023, length-averaged log-ratios)."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from objectives import metrics
from objectives.base import ObjectiveConfig, PreferenceLogps
from objectives.ipo import IPOObjective

F64 = torch.float64


def _pairs(
    chosen: list[tuple[float, float, float]], rejected: list[tuple[float, float, float]]
) -> PreferenceLogps:
    """Each completion is (policy logps, reference logps, length)."""
    chosen_columns = torch.tensor(chosen, dtype=F64).T
    rejected_columns = torch.tensor(rejected, dtype=F64).T
    return PreferenceLogps(
        policy_chosen_logps=chosen_columns[0].clone().requires_grad_(),
        policy_rejected_logps=rejected_columns[0].clone().requires_grad_(),
        reference_chosen_logps=chosen_columns[1],
        reference_rejected_logps=rejected_columns[1],
        chosen_lengths=chosen_columns[2],
        rejected_lengths=rejected_columns[2],
    )


def test_loss_and_metrics_by_hand() -> None:
    # beta = 0.1, target 1 / (2 * 0.1) = 5
    # pair 1: chosen (-10 - -12) / 4 = 0.5, rejected (-9 - -6) / 3 = -1, h = 1.5
    #         loss (1.5 - 5)^2 = 12.25
    # pair 2: chosen (-4 - -4) / 2 = 0, rejected (-8 - -10) / 5 = 0.4, h = -0.4
    #         loss (-0.4 - 5)^2 = 29.16
    batch = _pairs(
        [(-10.0, -12.0, 4.0), (-4.0, -4.0, 2.0)], [(-9.0, -6.0, 3.0), (-8.0, -10.0, 5.0)]
    )

    out = IPOObjective()(batch)

    assert_close(out.loss, torch.tensor((12.25 + 29.16) / 2, dtype=F64))
    # Metrics use the summed implicit reward: chosen 0.2, 0; rejected -0.3, 0.2.
    assert_close(out.metrics[metrics.REWARDS_CHOSEN], torch.tensor(0.1, dtype=F64))
    assert_close(out.metrics[metrics.REWARDS_REJECTED], torch.tensor(-0.05, dtype=F64))
    assert_close(out.metrics[metrics.REWARDS_MARGIN], torch.tensor(0.15, dtype=F64))
    assert_close(out.metrics[metrics.REWARDS_ACCURACY], torch.tensor(0.5, dtype=F64))
    # log-ratios 2, 0 (chosen), -3, 2 (rejected): mean 0.25
    assert_close(out.metrics[metrics.KL], torch.tensor(-0.25, dtype=F64))


def test_gradient_by_hand() -> None:
    # dL/d logp_w = 2 * (h - 5) / |y_w| / N: pair 1 gives 2 * -3.5 / 4 / 2 = -0.875
    batch = _pairs([(-10.0, -12.0, 4.0)] * 2, [(-9.0, -6.0, 3.0)] * 2)

    IPOObjective()(batch).loss.backward()

    assert_close(batch.policy_chosen_logps.grad, torch.tensor([-0.875] * 2, dtype=F64))
    # and -2 * (h - 5) / |y_l| / N = 7 / 3 / 2 for the rejected completion
    assert_close(batch.policy_rejected_logps.grad, torch.tensor([7 / 6] * 2, dtype=F64))


@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
def test_policy_equal_to_reference_gives_squared_target(beta: float) -> None:
    batch = _pairs([(-3.0, -3.0, 5.0), (-6.0, -6.0, 1.0)], [(-2.0, -2.0, 2.0), (-9.0, -9.0, 7.0)])

    out = IPOObjective(ObjectiveConfig(beta=beta))(batch)

    assert_close(out.loss, torch.tensor((1 / (2 * beta)) ** 2, dtype=F64))


def test_empty_completion_is_refused() -> None:
    batch = _pairs([(-3.0, -3.0, 0.0)], [(-2.0, -2.0, 2.0)])

    with pytest.raises(ValueError, match="at least one token"):
        IPOObjective()(batch)
