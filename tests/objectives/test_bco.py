"""BCO against hand-worked numbers (Jung et al. 2024, eq. 7 and 8)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from objectives import metrics
from objectives.base import BinaryLogps
from objectives.bco import BCOConfig, BCOObjective
from tests.objectives.lockstep import run_workers

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


def _scalar(value: float) -> torch.Tensor:
    return torch.tensor(value, dtype=F64)


def test_delta_moving_average_over_three_calls() -> None:
    # beta = 0.1, decay 0.5
    objective = BCOObjective(BCOConfig(delta_ema_decay=0.5))

    # call 1: up 0.2, 0.4 (mean 0.3); down -0.2. First sight of each class: take the means.
    # delta = (0.3 + -0.2) / 2 = 0.05
    out = objective(_rows([2.0, 4.0, -2.0], [True, True, False]))
    assert_close(out.metrics[metrics.DELTA], _scalar(0.05))

    # call 2: up 0.1; down 0.0, -0.4 (mean -0.2)
    # up = 0.5 * 0.3 + 0.5 * 0.1 = 0.2; down = 0.5 * -0.2 + 0.5 * -0.2 = -0.2; delta = 0
    out = objective(_rows([1.0, 0.0, -4.0], [True, False, False]))
    assert_close(out.metrics[metrics.DELTA], _scalar(0.0))

    # call 3: up 0.6 only; down keeps -0.2
    # up = 0.5 * 0.2 + 0.5 * 0.6 = 0.4; delta = (0.4 + -0.2) / 2 = 0.1
    out = objective(_rows([6.0], [True]))
    assert_close(out.metrics[metrics.DELTA], _scalar(0.1))
    assert_close(objective.down_mean, _scalar(-0.2))
    # loss: -log sigma(0.6 - 0.1) = log(1 + e^-0.5)
    assert_close(out.loss, _scalar(_softplus(-0.5)))


def test_loss_and_metrics_by_hand() -> None:
    # beta = 0.1: rewards up 0.2; down -0.1, 0.3 (mean 0.1); delta = (0.2 + 0.1) / 2 = 0.15
    # up: -log sigma(0.2 - 0.15); down: -log sigma(-(r - 0.15)) = log(1 + e^(r - 0.15))
    out = BCOObjective()(_rows([2.0, -1.0, 3.0], [True, False, False]))

    expected = (_softplus(-0.05) + _softplus(-0.25) + _softplus(0.15)) / 3
    assert_close(out.loss, _scalar(expected))
    assert_close(out.metrics[metrics.DELTA], _scalar(0.15))
    # r - delta: 0.05 (up, right), -0.25 (down, right), 0.15 (down, wrong)
    assert_close(out.metrics[metrics.REWARDS_ACCURACY], _scalar(2 / 3))
    error_term = math.exp(-0.05) + (math.exp(-0.25) + math.exp(0.15)) / 2
    assert_close(out.metrics[metrics.ERROR_TERM], _scalar(error_term))


def test_balanced_class_weighting_by_hand() -> None:
    # same rows and delta = 0.15; (E_up + E_down) / 2 with one up row and two down rows
    config = BCOConfig(class_weighting="balanced")

    out = BCOObjective(config)(_rows([2.0, -1.0, 3.0], [True, False, False]))

    expected = (_softplus(-0.05) + (_softplus(-0.25) + _softplus(0.15)) / 2) / 2
    assert_close(out.loss, _scalar(expected))


def test_class_never_seen_counts_as_zero() -> None:
    # first call holds only down rows -0.4, 0.0 (mean -0.2): delta = (0 + -0.2) / 2
    out = BCOObjective()(_rows([-4.0, 0.0], [False, False]))

    assert_close(out.metrics[metrics.DELTA], _scalar(-0.1))
    # -log sigma(-(r - delta)) = log(1 + e^(r + 0.1)) for r = -0.4, 0.0
    assert_close(out.loss, _scalar((_softplus(-0.3) + _softplus(0.1)) / 2))
    assert_close(out.metrics[metrics.REWARDS_UP], _scalar(0.0))


@pytest.mark.parametrize("label", [True, False])
def test_batch_of_one_row(label: bool) -> None:
    # r = 0.5 on a fresh objective: its class mean 0.5, the other 0; delta = 0.25
    out = BCOObjective()(_rows([5.0], [label]))

    assert_close(out.metrics[metrics.DELTA], _scalar(0.25))
    expected = _softplus(-0.25) if label else _softplus(0.25)
    assert_close(out.loss, _scalar(expected))


def test_state_dict_round_trip_continues_the_same_trajectory() -> None:
    config = BCOConfig(delta_ema_decay=0.7)
    steps = [
        _rows([2.0, 4.0, -2.0], [True, True, False]),
        _rows([1.0, 0.0], [True, False]),
        _rows([3.0, -5.0, 1.0], [False, True, True]),
    ]
    original = BCOObjective(config)
    for batch in steps[:2]:
        original(batch)

    resumed = BCOObjective(config)
    resumed.load_state_dict(original.state_dict())
    expected, actual = original(steps[2]), resumed(steps[2])

    assert_close(actual.loss, expected.loss)
    assert_close(actual.metrics[metrics.DELTA], expected.metrics[metrics.DELTA])
    for key, value in original.state_dict().items():
        assert_close(resumed.state_dict()[key], value)


def test_state_dict_of_another_objective_is_refused() -> None:
    with pytest.raises(ValueError, match="up_mean"):
        BCOObjective().load_state_dict({"z_ref": torch.zeros(())})


# --- two simulated workers -------------------------------------------------------------


def _shard(theta: torch.Tensor, rows: slice, step: int) -> BinaryLogps:
    """Rows of a fixed global batch whose policy logps depend on a shared parameter."""
    generator = torch.Generator().manual_seed(step)
    features = torch.randn(6, 2, generator=generator, dtype=F64)
    reference = -10 + torch.randn(6, generator=generator, dtype=F64)
    labels = torch.tensor([True, True, True, False, True, False])
    return BinaryLogps(
        policy_logps=(reference + features @ theta)[rows],
        reference_logps=reference[rows],
        labels=labels[rows],
        completion_lengths=torch.full((6,), 4.0, dtype=F64)[rows],
        weights=torch.tensor([1.0, 2.0, 1.0, 0.5, 1.0, 3.0], dtype=F64)[rows],
    )


@pytest.mark.parametrize("class_weighting", ["none", "balanced"])
def test_worker_shares_add_up_to_the_global_loss_and_gradient(class_weighting: str) -> None:
    # Worker 0 holds only thumbs-up rows; it still takes part in every reduction.
    config = BCOConfig(beta=0.5, class_weighting=class_weighting, delta_ema_decay=0.5)
    single, workers = BCOObjective(config), [BCOObjective(config), BCOObjective(config)]

    for step in range(3):  # the moving average must stay identical on every worker
        theta_full = torch.tensor([0.3, -0.8], dtype=F64, requires_grad=True)
        full = single(_shard(theta_full, slice(0, 6), step))
        full.loss.backward()

        thetas = [theta_full.detach().clone().requires_grad_() for _ in range(2)]
        shards = [_shard(thetas[0], slice(0, 3), step), _shard(thetas[1], slice(3, 6), step)]
        outputs = run_workers(workers, shards)
        for output in outputs:
            output.loss.backward()

        assert_close(outputs[0].loss + outputs[1].loss, full.loss)
        assert_close(thetas[0].grad + thetas[1].grad, theta_full.grad)
        for output in outputs:
            for key, value in full.metrics.items():
                assert_close(output.metrics[key], value)
