"""From parsed judgments to benchmark scores, following SCORING_SPECS §1-§4.

* MT-Bench: mean single-answer score per turn and overall, invalid ratings dropped.
* Pairwise win rate (the paper's metric): both answer orders, inconsistent = tie.
* Arena-Hard v0.1: weighted battles, Bradley-Terry score against the baseline,
  bootstrap confidence interval, average answer length.
* AlpacaEval 2.0: raw and discrete win rate, and the length-controlled win rate, from
  shipped GLM weights or from a ``length_controlled_noreg`` fit of new annotations.
"""

from __future__ import annotations

import csv
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from platform.evaluation import logistic
from platform.evaluation.verdicts import (
    MT_BENCH_INVALID_SCORE,
    PairwiseVerdict,
    normalise_legacy_preference,
)

logger = logging.getLogger(__name__)

MT_BENCH_SCORE = "mt_bench/score"
MT_BENCH_TURN_1 = "mt_bench/turn_1"
MT_BENCH_TURN_2 = "mt_bench/turn_2"
PAIRWISE_WIN_RATE = "pairwise/win_rate"
PAIRWISE_LOSS_RATE = "pairwise/loss_rate"
PAIRWISE_WIN_RATE_ADJUSTED = "pairwise/win_rate_adjusted"
ARENA_HARD_SCORE = "arena_hard/score"
ARENA_HARD_CI_LOWER = "arena_hard/ci_lower"
ARENA_HARD_CI_UPPER = "arena_hard/ci_upper"
ARENA_HARD_RATING = "arena_hard/rating"
ALPACA_EVAL_WIN_RATE = "alpaca_eval/win_rate"
ALPACA_EVAL_STANDARD_ERROR = "alpaca_eval/standard_error"
ALPACA_EVAL_DISCRETE_WIN_RATE = "alpaca_eval/discrete_win_rate"
ALPACA_EVAL_LC_WIN_RATE = "alpaca_eval/length_controlled_winrate"
ALPACA_EVAL_LC_STANDARD_ERROR = "alpaca_eval/lc_standard_error"

TIE = "tie"
MODEL_A, MODEL_B = "model_a", "model_b"
# SCORING_SPECS §3: a strong verdict (>>) counts three times.
ARENA_HARD_STRONG_WEIGHT = 3
_ARENA_HARD_OUTCOMES = {  # label -> (winner in A/B terms, weight)
    "A>>B": (MODEL_A, ARENA_HARD_STRONG_WEIGHT), "A>B": (MODEL_A, 1), "A=B": (TIE, 1),
    "B>A": (MODEL_B, 1), "B>>A": (MODEL_B, ARENA_HARD_STRONG_WEIGHT),
}
ELO_SCALE, ELO_ANCHOR = 400.0, 1000.0
# sklearn's default grid of 10 Cs, as the AlpacaEval GLM uses (SCORING_SPECS §4).
LC_CANDIDATE_CS = np.logspace(-4, 4, 10)
LC_CV_SPLITS = 5


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


# MT-Bench (§1) -------------------------------------------------------------------------


@dataclass(frozen=True)
class MtBenchJudgment:
    """One single-answer judgment of one (question, turn) of a model."""

    question_id: int
    model: str
    turn: int
    score: float  # parsed rating; -1 when the judge gave none


@dataclass(frozen=True)
class MtBenchResult:
    turn_1: float
    turn_2: float
    score: float  # mean over all kept (question, turn) rows
    n_judgments: int  # kept rows
    n_dropped: int  # rows with score -1

    def as_metrics(self) -> dict[str, float]:
        return {MT_BENCH_SCORE: self.score, MT_BENCH_TURN_1: self.turn_1,
                MT_BENCH_TURN_2: self.turn_2}


def mt_bench_scores(judgments: Iterable[MtBenchJudgment]) -> dict[str, MtBenchResult]:
    """Per model: drop -1 rows, mean per turn, and the mean over all rows (§1)."""
    kept, dropped = defaultdict(list), defaultdict(int)
    for judgment in judgments:
        if judgment.turn not in (1, 2):
            raise ValueError(f"MT-Bench turn must be 1 or 2, got {judgment.turn!r} for "
                             f"question {judgment.question_id} of {judgment.model!r}.")
        if judgment.score == MT_BENCH_INVALID_SCORE:
            dropped[judgment.model] += 1
        else:
            kept[judgment.model].append(judgment)
    results = {}
    for model in sorted(set(kept) | set(dropped)):
        rows = kept[model]
        results[model] = MtBenchResult(
            turn_1=_mean([row.score for row in rows if row.turn == 1]),
            turn_2=_mean([row.score for row in rows if row.turn == 2]),
            score=_mean([row.score for row in rows]),
            n_judgments=len(rows), n_dropped=dropped[model])
    return results


# Pairwise (§2, paper figure 5) ---------------------------------------------------------


@dataclass(frozen=True)
class PairwiseJudgment:
    """Both games of one pair: game 1 puts model_1 in slot A, game 2 puts model_2 in A."""

    question_id: int | str
    model_1: str
    model_2: str
    game_1: PairwiseVerdict
    game_2: PairwiseVerdict


def pairwise_winner(judgment: PairwiseJudgment) -> str | None:
    """The winning model, ``TIE``, or None when either game is an error (§2).

    Only two games naming the same model make a winner; a tie in game 1, or games that
    disagree, make a tie (inconsistent = tie).
    """
    games = (judgment.game_1, judgment.game_2)
    if PairwiseVerdict.ERROR in games:
        return None
    by_slot_1 = {PairwiseVerdict.A: judgment.model_1, PairwiseVerdict.B: judgment.model_2}
    by_slot_2 = {PairwiseVerdict.A: judgment.model_2, PairwiseVerdict.B: judgment.model_1}
    winner_1 = by_slot_1.get(judgment.game_1, TIE)
    winner_2 = by_slot_2.get(judgment.game_2, TIE)
    return winner_1 if winner_1 == winner_2 else TIE


@dataclass(frozen=True)
class PairwiseResult:
    wins: int
    losses: int
    ties: int
    win_rate: float  # W / (W + L + T)
    loss_rate: float
    win_rate_adjusted: float  # (W + T/2) / (W + L + T)

    def as_metrics(self) -> dict[str, float]:
        return {PAIRWISE_WIN_RATE: self.win_rate, PAIRWISE_LOSS_RATE: self.loss_rate,
                PAIRWISE_WIN_RATE_ADJUSTED: self.win_rate_adjusted}


def pairwise_win_rates(judgments: Iterable[PairwiseJudgment],
                       baseline: str | None = None) -> dict[str, PairwiseResult]:
    """W, L, T and win rates per model; pairs with an error dropped, baseline row removed."""
    counts = defaultdict(lambda: [0, 0, 0])  # model -> [wins, losses, ties]
    for judgment in judgments:
        winner = pairwise_winner(judgment)
        if winner is None:
            continue
        for model in (judgment.model_1, judgment.model_2):
            counts[model][2 if winner == TIE else 0 if winner == model else 1] += 1
    results = {}
    for model, (wins, losses, ties) in sorted(counts.items()):
        if model == baseline:
            continue
        total = wins + losses + ties
        results[model] = PairwiseResult(wins, losses, ties, wins / total, losses / total,
                                        (wins + 0.5 * ties) / total)
    return results


# Arena-Hard v0.1 (§3) ------------------------------------------------------------------


@dataclass(frozen=True)
class ArenaHardJudgment:
    """Both games of one prompt: game 1 is A = baseline, B = model; game 2 is swapped.

    A label is one of ``verdicts.ARENA_HARD_LABELS``; None (or anything else) is invalid.
    """

    question_id: str
    model: str
    game_1: str | None
    game_2: str | None


@dataclass(frozen=True)
class Battle:
    """One battle row; a strong verdict appears as three identical rows."""

    model_a: str
    model_b: str
    winner: str  # MODEL_A, MODEL_B or TIE


def arena_hard_battles(judgments: Iterable[ArenaHardJudgment], baseline: str, *,
                       drop_prompt_on_invalid: bool = False) -> list[Battle]:
    """Battle rows of the model against the baseline, weighted (SCORING_SPECS §3).

    Args:
        judgments: parsed games per (prompt, model).
        baseline: the baseline model (``gpt-4-0314`` for v0.1).
        drop_prompt_on_invalid: False drops only an invalid game (v0.1, the published
            leaderboard); True drops both games of its prompt (the current code).
    """
    battles = []
    for judgment in judgments:
        games = ((baseline, judgment.model, judgment.game_1),
                 (judgment.model, baseline, judgment.game_2))
        valid = [label in _ARENA_HARD_OUTCOMES for _, _, label in games]
        if drop_prompt_on_invalid and not all(valid):
            continue
        for (model_a, model_b, label), is_valid in zip(games, valid, strict=True):
            if is_valid:
                winner, weight = _ARENA_HARD_OUTCOMES[label]
                battles.extend([Battle(model_a, model_b, winner)] * weight)
    return battles


def _battle_arrays(battles: Sequence[Battle], models: Sequence[str]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    index = {model: position for position, model in enumerate(models)}
    model_a = np.array([index[battle.model_a] for battle in battles], dtype=int)
    model_b = np.array([index[battle.model_b] for battle in battles], dtype=int)
    outcome = np.array([{MODEL_A: 1.0, MODEL_B: 0.0, TIE: 0.5}[battle.winner]
                        for battle in battles])
    return model_a, model_b, outcome


def score_against(rating: float | np.ndarray, baseline_rating: float) -> float | np.ndarray:
    """Predicted win rate in percent: 100 / (1 + 10^((R_base - R_model) / 400))."""
    return 100.0 / (1.0 + 10.0 ** ((baseline_rating - rating) / ELO_SCALE))


def _models_with_baseline(battles: Sequence[Battle], baseline: str) -> list[str]:
    models = sorted({battle.model_a for battle in battles} | {battle.model_b for battle in battles})
    if baseline not in models:
        raise ValueError(f"baseline {baseline!r} is in no battle (models: {models}); pass "
                         "the baseline the games were judged against.")
    return models


def _elo(arrays: tuple[np.ndarray, np.ndarray, np.ndarray], n_models: int,
         anchor: int) -> np.ndarray:
    coefficients = logistic.fit_bradley_terry(*arrays, n_models=n_models, anchor=anchor)
    return ELO_SCALE * coefficients + ELO_ANCHOR


def arena_hard_ratings(battles: Sequence[Battle], baseline: str) -> dict[str, float]:
    """Elo ratings from the Bradley-Terry MLE, the baseline anchored at 1000 (§3)."""
    models = _models_with_baseline(battles, baseline)
    ratings = _elo(_battle_arrays(battles, models), len(models), models.index(baseline))
    return dict(zip(models, ratings.tolist(), strict=True))


@dataclass(frozen=True)
class ArenaHardResult:
    score: float  # percent win rate against the baseline
    ci_lower: float  # 2.5th bootstrap percentile of the score
    ci_upper: float  # 97.5th
    rating: float  # Elo, baseline = 1000
    average_length: float  # mean answer length (tokens, as given); NaN if not given

    def as_metrics(self) -> dict[str, float]:
        return {ARENA_HARD_SCORE: self.score, ARENA_HARD_CI_LOWER: self.ci_lower,
                ARENA_HARD_CI_UPPER: self.ci_upper, ARENA_HARD_RATING: self.rating}


def arena_hard_scores(battles: Sequence[Battle], baseline: str, *, n_bootstrap: int = 100,
                      seed: int = 0,
                      answer_lengths: Mapping[str, Sequence[float]] | None = None
                      ) -> dict[str, ArenaHardResult]:
    """Score, bootstrap CI and average answer length per model (SCORING_SPECS §3).

    The CI resamples the battle rows with replacement ``n_bootstrap`` times (seeded) and
    takes the 2.5 / 97.5 percentiles of each model's score (v0.1 leaderboard rule).
    """
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be >= 1, got {n_bootstrap}; the spec uses 100.")
    models = _models_with_baseline(battles, baseline)
    anchor = models.index(baseline)
    arrays = _battle_arrays(battles, models)
    ratings = _elo(arrays, len(models), anchor)
    rng = np.random.default_rng(seed)
    bootstrap_scores = np.empty((n_bootstrap, len(models)))  # (resample, model)
    for sample in range(n_bootstrap):
        rows = rng.integers(0, len(battles), size=len(battles))
        resampled = _elo(tuple(array[rows] for array in arrays), len(models), anchor)
        bootstrap_scores[sample] = score_against(resampled, ELO_ANCHOR)
    lengths = answer_lengths or {}
    results = {}
    for position, model in enumerate(models):
        lower, upper = np.percentile(bootstrap_scores[:, position], [2.5, 97.5])
        results[model] = ArenaHardResult(
            score=float(score_against(ratings[position], ELO_ANCHOR)), ci_lower=float(lower),
            ci_upper=float(upper), rating=float(ratings[position]),
            average_length=_mean(lengths.get(model, [])))
    return results


# AlpacaEval 2.0 (§4) -------------------------------------------------------------------


@dataclass(frozen=True)
class AlpacaEvalResult:
    win_rate: float  # 100 * mean(preference - 1)
    standard_error: float  # 100 * SEM (ddof 1)
    n_wins: int  # preference - 1 > 0.5
    n_wins_base: int  # preference - 1 < 0.5
    n_draws: int  # preference - 1 == 0.5
    n_total: int  # judged rows (NaN dropped)
    discrete_win_rate: float  # 100 * (wins + draws / 2) / total

    def as_metrics(self) -> dict[str, float]:
        return {ALPACA_EVAL_WIN_RATE: self.win_rate,
                ALPACA_EVAL_STANDARD_ERROR: self.standard_error,
                ALPACA_EVAL_DISCRETE_WIN_RATE: self.discrete_win_rate}


def _soft_labels(preferences: Sequence[float]) -> np.ndarray:
    """preference - 1 in [0, 1] (1: the evaluated model wins); legacy 0 read as a draw."""
    labels = np.array([normalise_legacy_preference(float(p)) for p in preferences]) - 1.0
    out_of_range = labels[(labels < 0.0) | (labels > 1.0)]
    if out_of_range.size:
        raise ValueError(f"AlpacaEval preferences must lie in [1, 2] (or be 0 or NaN); got "
                         f"{(out_of_range + 1.0).tolist()[:5]}; check the annotation file.")
    return labels


def alpaca_eval_win_rate(preferences: Sequence[float]) -> AlpacaEvalResult:
    """Raw win rate, its standard error and the discrete win rate (§4); NaN rows dropped."""
    labels = _soft_labels(preferences)
    labels = labels[~np.isnan(labels)]
    if labels.size < 2:
        raise ValueError(f"need at least 2 judged rows for a win rate, got {labels.size}.")
    wins, draws = int((labels > 0.5).sum()), int((labels == 0.5).sum())
    return AlpacaEvalResult(
        win_rate=100.0 * float(labels.mean()),
        standard_error=100.0 * float(labels.std(ddof=1) / math.sqrt(labels.size)),
        n_wins=wins, n_wins_base=int((labels < 0.5).sum()), n_draws=draws,
        n_total=int(labels.size),
        discrete_win_rate=100.0 * (wins + 0.5 * draws) / labels.size)


@dataclass(frozen=True)
class GlmWeights:
    """Length-controlled GLM coefficients of one model (baseline: all zero)."""

    length: float  # on tanh(std_delta_len)
    difficulty: float  # on the instruction difficulty d_i
    model: float  # on the constant "not gamed baseline" column


GLM_BASELINE_WEIGHTS = GlmWeights(0.0, 0.0, 0.0)
_GLM_COLUMNS = ("np.tanh(std_delta_len)", "instruction_difficulty",
                "not_gamed_baseline.astype(float)")


def _read_csv_rows(path: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = sorted(set(columns) - set(reader.fieldnames or []))
        if missing:
            raise ValueError(f"{path}: missing columns {missing} (found {reader.fieldnames}); "
                             "use the file SOURCES.md names.")
        return list(reader)


def load_glm_weights(path: Path) -> dict[str, GlmWeights]:
    """Shipped GLM weights by model name (the CSV's first, unnamed column)."""
    rows = _read_csv_rows(Path(path), _GLM_COLUMNS)
    return {row[""]: GlmWeights(*(float(row[column]) for column in _GLM_COLUMNS))
            for row in rows}


def load_instruction_difficulty(path: Path) -> np.ndarray:
    """(n_instructions,) d_i in eval-set order, from an ``index,instruction_difficulty`` CSV."""
    rows = _read_csv_rows(Path(path), ("index", "instruction_difficulty"))
    indices = sorted(int(row["index"]) for row in rows)
    if indices != list(range(len(rows))):
        raise ValueError(f"{path}: the index column must be 0..{len(rows) - 1} with no gaps "
                         "or repeats; use the file as shipped.")
    difficulty = np.empty(len(rows))
    for row in rows:
        difficulty[int(row["index"])] = float(row["instruction_difficulty"])
    return difficulty


@dataclass(frozen=True)
class LcResult:
    lc_win_rate: float
    lc_standard_error: float

    def as_metrics(self) -> dict[str, float]:
        return {ALPACA_EVAL_LC_WIN_RATE: self.lc_win_rate,
                ALPACA_EVAL_LC_STANDARD_ERROR: self.lc_standard_error}


def lc_win_rate(weights: GlmWeights, difficulty: np.ndarray,
                versus: GlmWeights = GLM_BASELINE_WEIGHTS) -> LcResult:
    """100 * mean_i sigma(dtheta_diff * d_i + dtheta_m) over all instructions (§4).

    The length term is set to 0; ``versus`` defaults to the baseline (all-zero weights),
    another model's weights give the head-to-head LC win rate.
    """
    logits = ((weights.difficulty - versus.difficulty) * difficulty
              + (weights.model - versus.model))
    per_instruction = logistic.sigmoid(logits)  # (n_instructions,)
    return LcResult(
        lc_win_rate=100.0 * float(per_instruction.mean()),
        lc_standard_error=100.0 * float(per_instruction.std(ddof=1)
                                        / math.sqrt(per_instruction.size)))


def standardised_length_difference(output_1: Sequence[str], output_2: Sequence[str]
                                   ) -> np.ndarray:
    """(len(output_1) - len(output_2)) in characters over its std (ddof 1) across rows."""
    if len(output_1) != len(output_2):
        raise ValueError(f"output_1 has {len(output_1)} rows and output_2 {len(output_2)}; "
                         "pass the two sides of the same annotations.")
    delta = np.array([len(a) - len(b) for a, b in zip(output_1, output_2, strict=True)],
                     dtype=float)
    return delta / delta.std(ddof=1)


@dataclass(frozen=True)
class LcFit:
    weights: GlmWeights
    c: float  # the inverse L1 strength chosen by CV
    cv_losses: np.ndarray  # (10,) mean held-out soft log-loss per candidate C
    result: LcResult


def fit_length_controlled_noreg(output_1: Sequence[str], output_2: Sequence[str],
                                preferences: Sequence[float], difficulty: np.ndarray,
                                instruction_index: Sequence[int] | None = None) -> LcFit:
    """Fit the ``length_controlled_noreg`` GLM of one model's annotations (SCORING_SPECS §4).

    logit P(model wins) = theta_len * tanh(std_delta_len) + theta_diff * d_i + theta_m,
    no intercept, L1 (liblinear form), soft labels preference - 1 by row duplication, C
    from 5-fold grouped CV over logspace(-4, 4, 10) on the soft log-loss.

    Args:
        output_1: baseline outputs, one per annotation row.
        output_2: the evaluated model's outputs.
        preferences: per row, in [1, 2]; NaN rows are dropped from the fit (their lengths
            still count in the length std, which spans all rows).
        difficulty: (n_instructions,) d_i, e.g. from ``load_instruction_difficulty``.
        instruction_index: eval-set index of each row; default: rows are in eval-set order.

    Limitations:
        The gamed-baseline rows of ``length_controlled_v1`` are not available offline, so
        theta_len is not shrunk as in the published numbers (SCORING_SPECS §4).
    """
    index = np.arange(len(output_1)) if instruction_index is None else np.asarray(
        instruction_index)
    labels = _soft_labels(preferences)
    features = np.column_stack([np.tanh(standardised_length_difference(output_1, output_2)),
                                difficulty[index], np.ones(index.size)])  # (rows, 3)
    judged = ~np.isnan(labels)
    cv = logistic.select_l1_logistic_c(features[judged], labels[judged], LC_CANDIDATE_CS,
                                       n_splits=LC_CV_SPLITS)
    weights = GlmWeights(*cv.weights.tolist())
    logger.info("length-controlled GLM: C=%g, weights %s", cv.c, weights)
    return LcFit(weights=weights, c=cv.c, cv_losses=cv.cv_losses,
                 result=lc_win_rate(weights, difficulty))
