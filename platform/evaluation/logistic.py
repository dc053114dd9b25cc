"""Logistic regressions behind the benchmark scores, in numpy.

Two fits (SCORING_SPECS §3 and §4):

* the Bradley-Terry MLE of Arena-Hard: logistic regression without intercept or penalty
  on +ln10 / -ln10 columns, each battle duplicated so that a tie is one win and one loss;
* the L1-penalised logistic regression of the AlpacaEval length-controlled GLM, in
  liblinear's form ``||w||_1 + C * sum_i s_i * log(1 + exp(-y_i x_i.w))`` with soft labels
  handled by row duplication, and C chosen by grouped K-fold CV on the soft log-loss.

The L1 problem is solved by proximal Newton: a quadratic model of the smooth part, an
exact coordinate-descent solve of the model plus the L1 term, and a backtracking line
search on the true objective. The design matrices here have a handful of columns, so
the Hessian is formed explicitly.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

LN10 = math.log(10.0)
# Probabilities are clipped before the log-loss, as common log-loss scorers do, so that a
# confident wrong prediction costs a large finite amount rather than inf.
_LOG_LOSS_EPS = 1e-15
# Keeps a Bradley-Terry rating finite when a model won (or lost) every battle; otherwise it
# moves a score by far less than 1e-6 points.
_BT_RIDGE = 1e-8


def log_sigmoid(z: np.ndarray) -> np.ndarray:
    """log(sigma(z)) without overflow."""
    return -np.logaddexp(0.0, -z)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """The logistic function without overflow."""
    return np.exp(log_sigmoid(z))


def l1_logistic_objective(weights: np.ndarray, features: np.ndarray, labels: np.ndarray,
                          sample_weight: np.ndarray, c: float) -> float:
    """liblinear's L1 objective ``||w||_1 + C * sum_i s_i * logloss_i`` (labels in {0, 1})."""
    z = features @ weights
    losses = -(labels * log_sigmoid(z) + (1.0 - labels) * log_sigmoid(-z))
    return float(np.abs(weights).sum() + c * np.dot(sample_weight, losses))


def _solve_l1_quadratic(weights: np.ndarray, gradient: np.ndarray, hessian: np.ndarray,
                        sweeps: int = 500) -> np.ndarray:
    """argmin_d  g.d + d'Hd/2 + ||w + d||_1 by cyclic coordinate descent.

    Coordinate descent finds the sign pattern quickly but crawls when columns are nearly
    collinear (a length feature close to the constant column), so every few sweeps the
    model is solved exactly on the current sign pattern and kept if it checks out.
    """
    step = np.zeros_like(weights)
    for sweep in range(sweeps):
        largest_change = 0.0
        for j in range(weights.size):
            curvature = max(hessian[j, j], 1e-12)
            # Gradient of the model in coordinate j, without coordinate j's own term.
            slope = gradient[j] + hessian[j] @ step - curvature * step[j]
            target = weights[j] - slope / curvature
            updated = np.sign(target) * max(abs(target) - 1.0 / curvature, 0.0)
            largest_change = max(largest_change, abs(updated - weights[j] - step[j]))
            step[j] = updated - weights[j]
        if largest_change < 1e-13:
            break
        if sweep % 5 == 4:
            exact = _solve_on_sign_pattern(weights, gradient, hessian, np.sign(weights + step))
            if exact is not None:
                return exact
    return step


def _solve_on_sign_pattern(weights: np.ndarray, gradient: np.ndarray, hessian: np.ndarray,
                           signs: np.ndarray) -> np.ndarray | None:
    """The model's minimiser if the solution has these signs (zeros stay zero), else None."""
    active = signs != 0
    if not active.any():
        return None
    rhs = hessian[active] @ weights - gradient[active] - signs[active]
    try:
        solved = np.linalg.solve(hessian[np.ix_(active, active)], rhs)
    except np.linalg.LinAlgError:
        return None
    updated = np.zeros_like(weights)
    updated[active] = solved
    step = updated - weights
    model_gradient = gradient + hessian @ step
    if np.any(np.sign(solved) != signs[active]):
        return None
    if np.any(np.abs(model_gradient[~active]) > 1.0 + 1e-12):
        return None
    return step


def _l1_optimality_gap(weights: np.ndarray, gradient: np.ndarray) -> float:
    """Largest entry of the minimum-norm subgradient of ``||w||_1 + smooth(w)``."""
    active = np.abs(gradient + np.sign(weights))
    inactive = np.maximum(np.abs(gradient) - 1.0, 0.0)
    return float(np.where(weights != 0.0, active, inactive).max())


def fit_l1_logistic(features: np.ndarray, labels: np.ndarray, sample_weight: np.ndarray,
                    c: float, *, tol: float = 1e-10, max_iter: int = 100) -> np.ndarray:
    """Minimise ``||w||_1 + C * sum_i s_i * logloss_i`` without intercept (SCORING_SPECS §4).

    Args:
        features: (rows, columns) design matrix.
        labels: (rows,) hard labels in {0, 1}.
        sample_weight: (rows,) non-negative weights (liblinear multiplies C by them).
        c: inverse regularisation strength, > 0.
        tol: stop when the minimum-norm subgradient falls below ``tol`` times its value at
            the start (at least 1), or when a step moves no coefficient by more than 1e-12.
        max_iter: most proximal Newton steps.

    Returns:
        (columns,) fitted coefficients.
    """
    if not c > 0:
        raise ValueError(f"C must be > 0, got {c!r}; pass a positive inverse penalty strength.")
    weights = np.zeros(features.shape[1])
    objective = l1_logistic_objective(weights, features, labels, sample_weight, c)
    threshold = None
    for _ in range(max_iter):
        probabilities = sigmoid(features @ weights)
        gradient = c * features.T @ (sample_weight * (probabilities - labels))
        gap = _l1_optimality_gap(weights, gradient)
        # Relative: with a large C the gradient's rounding noise grows with C.
        threshold = tol * max(1.0, gap) if threshold is None else threshold
        if gap <= threshold:
            break
        curvature = c * sample_weight * probabilities * (1.0 - probabilities)
        hessian = features.T @ (features * curvature[:, None])
        step = _solve_l1_quadratic(weights, gradient, hessian)
        weights, objective, moved = _line_search(
            weights, step, gradient, objective, (features, labels, sample_weight, c))
        if not moved or np.abs(step).max() < 1e-12:
            break
    return weights


def _line_search(weights: np.ndarray, step: np.ndarray, gradient: np.ndarray,
                 objective: float, problem: tuple) -> tuple[np.ndarray, float, bool]:
    """Backtracking (Armijo) on the full L1 objective along a proximal Newton step."""
    decrease = float(gradient @ step + np.abs(weights + step).sum() - np.abs(weights).sum())
    length = 1.0
    for _ in range(60):
        candidate = weights + length * step
        value = l1_logistic_objective(candidate, *problem)
        if value <= objective + 0.01 * length * decrease:
            return candidate, value, True
        length *= 0.5
    return weights, objective, False


def duplicate_soft_labels(features: np.ndarray, soft_labels: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each row becomes a label-1 copy of weight y and a label-0 copy of weight 1 - y.

    Returns:
        features (2n, k), labels (2n,), sample weights (2n,), groups (2n,) where group i
        is the original row i, so that both copies always fall in the same CV fold.
    """
    n_rows = soft_labels.size
    doubled = np.concatenate([features, features])
    labels = np.concatenate([np.ones(n_rows), np.zeros(n_rows)])
    weights = np.concatenate([soft_labels, 1.0 - soft_labels])
    groups = np.concatenate([np.arange(n_rows), np.arange(n_rows)])
    return doubled, labels, weights, groups


def grouped_folds(groups: np.ndarray, n_splits: int) -> np.ndarray:
    """Fold number per row: whole groups to folds, largest group first, each to the lightest.

    Groups of equal size are taken in decreasing group order (a stable sort, reversed), so
    the assignment is deterministic, as grouped K-fold is.
    """
    unique, inverse = np.unique(groups, return_inverse=True)
    if unique.size < n_splits:
        raise ValueError(f"{n_splits}-fold CV needs at least {n_splits} groups, got "
                         f"{unique.size}; pass more rows or fewer splits.")
    sizes = np.bincount(inverse)
    fold_of_group = np.empty(unique.size, dtype=int)
    fold_sizes = np.zeros(n_splits, dtype=int)
    for group in np.argsort(sizes, kind="stable")[::-1]:
        lightest = int(np.argmin(fold_sizes))
        fold_of_group[group] = lightest
        fold_sizes[lightest] += sizes[group]
    return fold_of_group[inverse]


def soft_log_loss(probabilities: np.ndarray, labels: np.ndarray,
                  sample_weight: np.ndarray) -> float:
    """Weighted mean log-loss; on duplicated soft-label rows this is the soft log-loss."""
    clipped = np.clip(probabilities, _LOG_LOSS_EPS, 1.0 - _LOG_LOSS_EPS)
    losses = -(labels * np.log(clipped) + (1.0 - labels) * np.log1p(-clipped))
    return float(np.dot(sample_weight, losses) / sample_weight.sum())


@dataclass(frozen=True)
class L1CvResult:
    """The C chosen by grouped CV and the refit on all rows (SCORING_SPECS §4)."""

    c: float
    weights: np.ndarray  # (columns,) refit on every row with the chosen C
    cs: np.ndarray  # (n_cs,) the candidates
    cv_losses: np.ndarray  # (n_cs,) mean held-out soft log-loss over the folds


def select_l1_logistic_c(features: np.ndarray, soft_labels: np.ndarray, cs: np.ndarray,
                         n_splits: int = 5) -> L1CvResult:
    """Choose C by grouped K-fold CV on the soft log-loss, then refit on all rows.

    Args:
        features: (n, k) design matrix of the original (not duplicated) rows.
        soft_labels: (n,) labels in [0, 1].
        cs: candidate C values; ties in CV loss go to the earliest candidate.
        n_splits: number of folds; both copies of a row share a fold.
    """
    if np.any((soft_labels < 0) | (soft_labels > 1)) or np.any(np.isnan(soft_labels)):
        raise ValueError("soft labels must lie in [0, 1] with no NaN; drop NaN rows first.")
    doubled, labels, weights, groups = duplicate_soft_labels(features, soft_labels)
    folds = grouped_folds(groups, n_splits)
    cv_losses = np.zeros(len(cs))
    for index, c in enumerate(cs):
        fold_losses = []
        for fold in range(n_splits):
            train, held_out = folds != fold, folds == fold
            fitted = fit_l1_logistic(doubled[train], labels[train], weights[train], c)
            probabilities = sigmoid(doubled[held_out] @ fitted)
            fold_losses.append(soft_log_loss(probabilities, labels[held_out], weights[held_out]))
        cv_losses[index] = np.mean(fold_losses)
    best = int(np.argmin(cv_losses))
    logger.debug("grouped CV losses %s; chose C=%g", np.round(cv_losses, 6), cs[best])
    refit = fit_l1_logistic(doubled, labels, weights, float(cs[best]))
    return L1CvResult(c=float(cs[best]), weights=refit, cs=np.asarray(cs, dtype=float),
                      cv_losses=cv_losses)


def fit_bradley_terry(model_a: np.ndarray, model_b: np.ndarray, outcome: np.ndarray,
                      n_models: int, anchor: int, *, max_iter: int = 100) -> np.ndarray:
    """Bradley-Terry MLE on the log10 scale, with the anchor's coefficient fixed at 0.

    P(a beats b) = 1 / (1 + 10^(beta_b - beta_a)) (SCORING_SPECS §3). Each battle is
    duplicated: a win is Y=1 twice, a loss Y=0 twice, a tie one of each. Fixing the anchor
    at 0 is the same as fitting all coefficients and shifting so that the anchor is 0.

    Args:
        model_a: (battles,) index of the model in slot a.
        model_b: (battles,) index of the model in slot b.
        outcome: (battles,) 1 if a won, 0 if b won, 0.5 for a tie.
        n_models: number of models; indices lie in [0, n_models).
        anchor: index of the model whose coefficient is 0.

    Returns:
        (n_models,) coefficients; Elo = 400 * coefficient + 1000.
    """
    rows = np.arange(model_a.size)
    design = np.zeros((model_a.size, n_models))
    design[rows, model_a] += LN10
    design[rows, model_b] -= LN10
    design = np.delete(np.concatenate([design, design]), anchor, axis=1)
    labels = np.concatenate([(outcome >= 0.5), (outcome >= 1.0)]).astype(float)
    free = np.zeros(n_models - 1)
    for _ in range(max_iter):
        probabilities = sigmoid(design @ free)
        gradient = design.T @ (probabilities - labels) + _BT_RIDGE * free
        curvature = probabilities * (1.0 - probabilities)
        hessian = design.T @ (design * curvature[:, None]) + _BT_RIDGE * np.eye(free.size)
        step = np.linalg.solve(hessian, gradient)
        free -= step
        if np.abs(step).max() < 1e-10:
            break
    return np.insert(free, anchor, 0.0)
