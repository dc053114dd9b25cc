"""The numpy logistic regressions: the L1 solver against scipy on a reformulation, the
L1 zero threshold worked out by hand, grouped folds, and Bradley-Terry by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from platform.evaluation import logistic


def _soft_problem(seed: int = 0, rows: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    features = np.column_stack([rng.normal(size=rows), rng.uniform(-1, 1, size=rows),
                                np.ones(rows)])  # (rows, 3), the last a constant column
    soft_labels = logistic.sigmoid(features @ np.array([1.5, -0.7, 0.3])
                                   + rng.normal(scale=0.5, size=rows))
    return features, soft_labels


def _scipy_l1(features, labels, weights, c) -> tuple[np.ndarray, float]:
    """Reference: w = u - v with u, v >= 0 makes the L1 term linear, solved by L-BFGS-B."""
    minimize = pytest.importorskip("scipy.optimize", reason="scipy is the reference").minimize
    k = features.shape[1]

    def value_and_gradient(uv):
        w = uv[:k] - uv[k:]
        gradient = c * features.T @ (weights * (logistic.sigmoid(features @ w) - labels))
        value = logistic.l1_logistic_objective(w, features, labels, weights, c)
        return value, np.concatenate([gradient + 1.0, 1.0 - gradient])

    solution = minimize(value_and_gradient, np.zeros(2 * k), jac=True, method="L-BFGS-B",
                        bounds=[(0, None)] * (2 * k),
                        options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 20000})
    return solution.x[:k] - solution.x[k:], solution.fun


@pytest.mark.parametrize("c", [0.05, 1.0, 100.0])
def test_l1_solver_matches_scipy(c):
    features, soft_labels = _soft_problem()
    doubled, labels, weights, _ = logistic.duplicate_soft_labels(features, soft_labels)
    ours = logistic.fit_l1_logistic(doubled, labels, weights, c)
    reference, reference_value = _scipy_l1(doubled, labels, weights, c)
    our_value = logistic.l1_logistic_objective(ours, doubled, labels, weights, c)
    assert our_value <= reference_value + 1e-9 * max(1.0, abs(reference_value))
    np.testing.assert_allclose(ours, reference, atol=2e-4)


def test_l1_solution_is_exactly_zero_below_the_hand_threshold():
    # At w = 0 every p is 1/2, so the smooth gradient is C * X'(s * (1/2 - y)) summed over
    # the duplicated rows = C * X'(1/2 - y_soft). w = 0 is optimal iff that is <= 1 in
    # every coordinate, i.e. C <= 1 / max_j |X'(1/2 - y_soft)|_j.
    features, soft_labels = _soft_problem(seed=1)
    threshold = 1.0 / np.abs(features.T @ (0.5 - soft_labels)).max()
    doubled, labels, weights, _ = logistic.duplicate_soft_labels(features, soft_labels)
    below = logistic.fit_l1_logistic(doubled, labels, weights, 0.99 * threshold)
    above = logistic.fit_l1_logistic(doubled, labels, weights, 1.5 * threshold)
    assert np.all(below == 0.0)
    assert np.count_nonzero(above) >= 1


def test_duplication_gives_the_soft_cross_entropy():
    features, soft_labels = _soft_problem(seed=2, rows=20)
    doubled, labels, weights, groups = logistic.duplicate_soft_labels(features, soft_labels)
    w = np.array([0.3, -0.2, 0.1])
    z = features @ w
    soft_cross_entropy = -(soft_labels * np.log(logistic.sigmoid(z))
                           + (1 - soft_labels) * np.log(logistic.sigmoid(-z)))
    # c = 1 and w's L1 norm 0.6: objective = 0.6 + sum of the soft cross-entropies.
    objective = logistic.l1_logistic_objective(w, doubled, labels, weights, 1.0)
    assert objective == pytest.approx(0.6 + soft_cross_entropy.sum())
    assert list(groups[:20]) == list(groups[20:]) == list(range(20))


def test_grouped_folds_by_hand():
    # 7 groups of 2 rows, 3 folds: equal sizes go in decreasing group order to the
    # lightest fold (first on ties): 6->0, 5->1, 4->2, 3->0, 2->1, 1->2, 0->0.
    groups = np.array([0, 1, 2, 3, 4, 5, 6] * 2)
    folds = logistic.grouped_folds(groups, 3)
    assert list(folds[:7]) == [0, 2, 1, 0, 2, 1, 0]
    assert list(folds[7:]) == list(folds[:7])  # both copies of a row share a fold
    with pytest.raises(ValueError, match="at least 5 groups"):
        logistic.grouped_folds(np.array([0, 1, 2]), 5)


def test_cv_picks_a_large_c_when_the_signal_is_strong():
    features, soft_labels = _soft_problem(seed=3, rows=400)
    result = logistic.select_l1_logistic_c(features, soft_labels, np.logspace(-4, 4, 10))
    assert result.cv_losses[0] == pytest.approx(math.log(2))  # C=1e-4: w = 0, p = 1/2
    assert result.c >= 1.0
    np.testing.assert_allclose(result.weights, [1.5, -0.7, 0.3], atol=0.25)


def test_bradley_terry_one_model_by_hand():
    # Model 1 against anchor 0: 3 wins, 1 loss, 2 ties -> rate (3 + 2/2) / 6 = 2/3, and
    # 1 / (1 + 10^-beta) = 2/3 gives beta = log10(2).
    outcome = np.array([1, 1, 1, 0, 0.5, 0.5])
    coefficients = logistic.fit_bradley_terry(np.ones(6, int), np.zeros(6, int), outcome,
                                              n_models=2, anchor=0)
    np.testing.assert_allclose(coefficients, [0.0, math.log10(2)], atol=1e-7)


def test_bradley_terry_transitive_chain_and_separation():
    # 0 beats 1 in 3 of 4 and 1 beats 2 in 3 of 4; no 0-2 games: beta = (log10 3, 0, -log10 3)
    # around the anchor 1.
    model_a = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    model_b = np.array([1, 1, 1, 1, 2, 2, 2, 2])
    outcome = np.array([1, 1, 1, 0, 1, 1, 1, 0], dtype=float)
    coefficients = logistic.fit_bradley_terry(model_a, model_b, outcome, 3, anchor=1)
    np.testing.assert_allclose(coefficients, [math.log10(3), 0.0, -math.log10(3)], atol=1e-7)
    always = logistic.fit_bradley_terry(np.ones(5, int), np.zeros(5, int), np.ones(5), 2, 0)
    assert np.isfinite(always).all() and always[1] > 4  # won every battle: finite, > 99.99%
