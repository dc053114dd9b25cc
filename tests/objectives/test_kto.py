"""KTO against hand-worked numbers (Jung et al. 2024, eq. 2 to 4)."""

from __future__ import annotations

import math

import pydantic
import pytest
import torch
from torch.testing import assert_close

from objectives import metrics
from objectives.base import BinaryLogps
from objectives.kto import KTOConfig, KTOObjective
from tests.objectives.lockstep import run_workers

F64 = torch.float64


def _sigma(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _rows(
    log_ratios: list[float],
    labels: list[bool],
    mismatched_log_ratios: list[float] | None,
    weights: list[float] | None = None,
) -> BinaryLogps:
    """Rows whose policy logps exceed the reference logps (-10) by ``log_ratios``."""
    reference = torch.full((len(labels),), -10.0, dtype=F64)
    mismatched = None
    if mismatched_log_ratios is not None:
        mismatched = torch.tensor(mismatched_log_ratios, dtype=F64) - 20.0
    return BinaryLogps(
        policy_logps=(reference + torch.tensor(log_ratios, dtype=F64)).requires_grad_(),
        reference_logps=reference,
        labels=torch.tensor(labels),
        completion_lengths=torch.full((len(labels),), 5.0, dtype=F64),
        weights=None if weights is None else torch.tensor(weights, dtype=F64),
        policy_mismatched_logps=mismatched,
        reference_mismatched_logps=None
        if mismatched is None
        else torch.full_like(mismatched, -20.0),
    )


def test_declares_mismatched_pairs() -> None:
    assert KTOObjective.needs_reference
    assert KTOObjective.needs_mismatched_pairs


def test_loss_and_metrics_by_hand() -> None:
    # beta = 0.1, lambda_D = 2, lambda_U = 1
    # rewards: up 0.1 * 2 = 0.2; down 0.1 * 1 = 0.1; down 0.1 * -2 = -0.2
    # z_ref = max(0, 0.1 * (1 + 1 - 1) / 3) = 1/30
    batch = _rows([2.0, 1.0, -2.0], [True, False, False], [1.0, 1.0, -1.0])
    objective = KTOObjective(KTOConfig(desirable_weight=2.0, undesirable_weight=1.0))

    out = objective(batch)

    z_ref = 1 / 30
    up = 2 * (1 - _sigma(0.2 - z_ref))  # = 2 * (1 - sigma(1/6))
    down_1 = 1 - _sigma(z_ref - 0.1)  # = 1 - sigma(-1/15)
    down_2 = 1 - _sigma(z_ref + 0.2)  # = 1 - sigma(7/30)
    assert_close(out.loss, torch.tensor((up + down_1 + down_2) / 3, dtype=F64))
    assert_close(out.metrics[metrics.Z_REF], torch.tensor(z_ref, dtype=F64))
    assert_close(out.metrics[metrics.REWARDS_UP], torch.tensor(0.2, dtype=F64))
    assert_close(out.metrics[metrics.REWARDS_DOWN], torch.tensor(-0.05, dtype=F64))
    # r - z_ref: 1/6 (up, right), 1/15 (down, wrong), -7/30 (down, right)
    assert_close(out.metrics[metrics.REWARDS_ACCURACY], torch.tensor(2 / 3, dtype=F64))
    error_term = math.exp(-1 / 6) + (math.exp(1 / 15) + math.exp(-7 / 30)) / 2
    assert_close(out.metrics[metrics.ERROR_TERM], torch.tensor(error_term, dtype=F64))
    assert_close(out.metrics[metrics.KL], torch.tensor(-1 / 3, dtype=F64))  # -(2 + 1 - 2) / 3


def test_z_ref_zero_and_equal_weights_reduce_to_sigmoid_of_reward() -> None:
    # mismatched rewards average -0.1 < 0, so z_ref = 0 and
    # L = mean(up: 1 - sigma(r) = sigma(-r); down: 1 - sigma(-r) = sigma(r))
    batch = _rows([3.0, -1.0, 4.0], [True, True, False], [-2.0, -1.0, 0.0])

    out = KTOObjective()(batch)

    expected = (_sigma(-0.3) + _sigma(0.1) + _sigma(0.4)) / 3
    assert_close(out.loss, torch.tensor(expected, dtype=F64))
    assert_close(out.metrics[metrics.Z_REF], torch.tensor(0.0, dtype=F64))


def test_data_stream_weights_by_hand() -> None:
    # z_ref = 0; per-row losses sigma(-0.3), sigma(0.1), sigma(0.4) weighted 1, 3, 0.5
    batch = _rows([3.0, -1.0, 4.0], [True, True, False], [0.0, 0.0, 0.0], [1.0, 3.0, 0.5])

    out = KTOObjective()(batch)

    expected = (_sigma(-0.3) + 3 * _sigma(0.1) + 0.5 * _sigma(0.4)) / 4.5
    assert_close(out.loss, torch.tensor(expected, dtype=F64))


def test_gradient_by_hand() -> None:
    # z_ref is detached: d/d logp of lambda_D * (1 - sigma(r - z)) = -lambda_D * beta * s(1 - s)
    batch = _rows([2.0], [True], [1.0])

    KTOObjective(KTOConfig(desirable_weight=2.0))(batch).loss.backward()

    s = _sigma(0.2 - 0.1)
    assert_close(batch.policy_logps.grad, torch.tensor([-2 * 0.1 * s * (1 - s)], dtype=F64))


@pytest.mark.parametrize("label", [True, False])
def test_batch_of_one_row(label: bool) -> None:
    # r = 0.5, z_ref = 0.1 * 3 = 0.3
    batch = _rows([5.0], [label], [3.0])

    out = KTOObjective()(batch)

    expected = 1 - _sigma(0.2) if label else 1 - _sigma(-0.2)
    assert_close(out.loss, torch.tensor(expected, dtype=F64))
    assert torch.isfinite(out.metrics[metrics.REWARDS_UP])
    assert torch.isfinite(out.metrics[metrics.REWARDS_DOWN])


def test_single_class_micro_batch() -> None:
    # two thumbs-down rows, rewards -0.1 and 0.3, z_ref = 0.1 * (2 + 0) / 2 = 0.1
    batch = _rows([-1.0, 3.0], [False, False], [2.0, 0.0])

    out = KTOObjective()(batch)

    expected = ((1 - _sigma(0.1 + 0.1)) + (1 - _sigma(0.1 - 0.3))) / 2
    assert_close(out.loss, torch.tensor(expected, dtype=F64))
    assert_close(out.metrics[metrics.REWARDS_UP], torch.tensor(0.0, dtype=F64))


def test_missing_mismatched_logps_is_refused() -> None:
    batch = _rows([1.0], [True], None)

    with pytest.raises(ValueError, match="mismatched"):
        KTOObjective()(batch)


@pytest.mark.parametrize(
    "options", [{"desirable_weight": 0.0}, {"undesirable_weight": -1.0}, {"lambda_d": 1.0}]
)
def test_bad_config_is_refused(options: dict[str, float]) -> None:
    with pytest.raises(pydantic.ValidationError):
        KTOConfig(**options)


# --- two simulated workers -------------------------------------------------------------


def _shard(theta: torch.Tensor, rows: slice) -> BinaryLogps:
    """Rows of a fixed global batch whose policy logps depend on a shared parameter."""
    generator = torch.Generator().manual_seed(0)
    features = torch.rand(6, 2, generator=generator, dtype=F64)  # > 0, so z_ref > 0
    reference = -10 + torch.randn(6, generator=generator, dtype=F64)
    mismatched = -20 + torch.randn(6, generator=generator, dtype=F64)
    labels = torch.tensor([True, True, True, False, True, False])
    weights = torch.tensor([1.0, 2.0, 1.0, 0.5, 1.0, 3.0], dtype=F64)
    return BinaryLogps(
        policy_logps=(reference + features @ theta)[rows],
        reference_logps=reference[rows],
        labels=labels[rows],
        completion_lengths=torch.full((6,), 4.0, dtype=F64)[rows],
        weights=weights[rows],
        policy_mismatched_logps=(mismatched + features @ theta)[rows],
        reference_mismatched_logps=mismatched[rows],
    )


def test_worker_shares_add_up_to_the_global_loss_and_gradient() -> None:
    # Worker 0 holds only thumbs-up rows; it still takes part in every reduction.
    config = KTOConfig(beta=0.5, undesirable_weight=1.5)
    theta_full = torch.tensor([0.3, 0.8], dtype=F64, requires_grad=True)
    full = KTOObjective(config)(_shard(theta_full, slice(0, 6)))
    full.loss.backward()

    thetas = [theta_full.detach().clone().requires_grad_() for _ in range(2)]
    shards = [_shard(thetas[0], slice(0, 3)), _shard(thetas[1], slice(3, 6))]
    outputs = run_workers([KTOObjective(config), KTOObjective(config)], shards)
    for output in outputs:
        output.loss.backward()

    assert full.metrics[metrics.Z_REF] > 0  # the max(0, .) does not hide the sharing
    assert_close(outputs[0].loss + outputs[1].loss, full.loss)
    assert_close(thetas[0].grad + thetas[1].grad, theta_full.grad)
    for output in outputs:
        assert output.metrics.keys() == full.metrics.keys()
        for key, value in full.metrics.items():
            assert_close(output.metrics[key], value)
