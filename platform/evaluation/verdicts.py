"""Parsing of judge replies into scores and verdicts, exactly as SCORING_SPECS states.

* MT-Bench single-answer grading (§1): ``[[x]]``, else ``[x]``, else -1.
* Pairwise judging (§2 and the paper's figure 5): substring test ``[[A]]``, ``[[B]]``,
  ``[[C]]`` in that order.
* Arena-Hard v0.1 (§3): the legacy rule behind the published leaderboard, and the
  current rule, as two functions.
* AlpacaEval 2.0 (§4): the preference from the judge's top-5 logprobs, with the per-
  instruction swap of the two outputs.
"""

from __future__ import annotations

import enum
import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# MT-Bench (§1) -------------------------------------------------------------------------

MT_BENCH_INVALID_SCORE = -1.0
_MT_BENCH_DOUBLE_BRACKETS = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_MT_BENCH_SINGLE_BRACKETS = re.compile(r"\[(\d+\.?\d*)\]")


def parse_mt_bench_score(judgment: str) -> float:
    """The first ``[[x]]`` rating, else the first ``[x]``, else -1 (SCORING_SPECS §1)."""
    for pattern in (_MT_BENCH_DOUBLE_BRACKETS, _MT_BENCH_SINGLE_BRACKETS):
        match = pattern.search(judgment)
        if match is not None:
            return float(match.group(1))
    return MT_BENCH_INVALID_SCORE


# Pairwise (§2, paper figure 5) ---------------------------------------------------------


class PairwiseVerdict(enum.Enum):
    """A pairwise judge's verdict about the answers in slots A and B."""

    A = "A"
    B = "B"
    TIE = "tie"
    ERROR = "error"


# The order matters: a reply that contains both "[[A]]" and "[[B]]" counts as A.
_PAIRWISE_MARKERS = (("[[A]]", PairwiseVerdict.A), ("[[B]]", PairwiseVerdict.B),
                     ("[[C]]", PairwiseVerdict.TIE))


def parse_pairwise_verdict(judgment: str) -> PairwiseVerdict:
    """Substring test for ``[[A]]``, then ``[[B]]``, then ``[[C]]`` (SCORING_SPECS §2)."""
    for marker, verdict in _PAIRWISE_MARKERS:
        if marker in judgment:
            return verdict
    return PairwiseVerdict.ERROR


# Arena-Hard (§3) -----------------------------------------------------------------------

ARENA_HARD_LABELS = ("A>>B", "A>B", "A=B", "B>A", "B>>A")
_ARENA_HARD_DOUBLE_BRACKETS = re.compile(r"\[\[([AB<>=]+)\]\]")
_ARENA_HARD_SINGLE_BRACKETS = re.compile(r"\[([AB<>=]+)\]")


class ArenaHardOutcome(enum.Enum):
    """What the v0.1 rule makes of one judge reply."""

    LABEL = "label"  # exactly one distinct verdict label
    INVALID = "invalid"  # several distinct labels, or one that is not a verdict label
    MISSING = "missing"  # no label: v0.1 asks the judge to continue


@dataclass(frozen=True)
class ArenaHardParse:
    """The v0.1 reading of a reply; ``label`` is set only when the outcome is LABEL."""

    outcome: ArenaHardOutcome
    label: str | None = None


def parse_arena_hard_v01(judgment: str) -> ArenaHardParse:
    """Arena-Hard v0.1 rule: every ``[[...]]`` match must carry one and the same label.

    With no match the v0.1 judge loop appends the reply, sends the continuation message
    and parses the concatenated replies again (at most 2 attempts; SCORING_SPECS §3).
    A single distinct label outside ``ARENA_HARD_LABELS`` (say ``[[A]]``) is INVALID:
    v0.1 keeps such a label but gives it weight 0 when counting battles, which is the
    same as dropping the game.
    """
    labels = set(_ARENA_HARD_DOUBLE_BRACKETS.findall(judgment))
    if not labels:
        return ArenaHardParse(ArenaHardOutcome.MISSING)
    if len(labels) > 1:
        return ArenaHardParse(ArenaHardOutcome.INVALID)
    (label,) = labels
    if label not in ARENA_HARD_LABELS:
        return ArenaHardParse(ArenaHardOutcome.INVALID)
    return ArenaHardParse(ArenaHardOutcome.LABEL, label)


def parse_arena_hard_current(judgment: str) -> str | None:
    """Current Arena-Hard rule: the last ``[[...]]`` label of the upper-cased reply, else
    the last ``[...]`` label, else None (SCORING_SPECS §3)."""
    upper = judgment.upper()
    for pattern in (_ARENA_HARD_DOUBLE_BRACKETS, _ARENA_HARD_SINGLE_BRACKETS):
        matches = [match for match in pattern.findall(upper) if match]
        if matches:
            return matches[-1]
    return None


# AlpacaEval 2.0 (§4) -------------------------------------------------------------------

ALPACA_EVAL_TOKEN_OUTPUT_1 = "m"  # the judge sees output_1 under this identifier
ALPACA_EVAL_TOKEN_OUTPUT_2 = "M"
IDENTICAL_OUTPUTS_PREFERENCE = 1.5
_LEGACY_DRAW_PREFERENCE = 0.0
_SWAP_KEY_PREFIX = "is_switched_outputs"


def alpaca_eval_is_switched(instruction: str, seed: int = 0) -> bool:
    """Whether the judge sees the pair swapped (output_2 as "m"); SCORING_SPECS §4.

    Deterministic per instruction: the first draw of ``random.Random`` seeded with the
    string ``"is_switched_outputs" + instruction + str(seed)``. The default seed is 0.
    """
    return random.Random(_SWAP_KEY_PREFIX + instruction + str(seed)).choices([False, True])[0]


def top_logprobs_of_reply(reply: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The top logprobs of the first generated token of a chat-completions choice.

    Accepts one element of ``choices`` (``{"logprobs": {"content": [{"top_logprobs":
    [...]}]}}``), as the AlpacaEval annotations store it in ``raw_completion``.
    """
    try:
        return list(reply["logprobs"]["content"][0]["top_logprobs"])
    except (KeyError, IndexError, TypeError) as error:
        raise ValueError(
            f"the reply has no logprobs.content[0].top_logprobs ({error!r}); request the "
            "judgment with logprobs=True and top_logprobs=5.") from error


def alpaca_eval_probability_m(top_logprobs: Sequence[Mapping[str, Any]]) -> float:
    """p_m = e^lp(m) / (e^lp(m) + e^lp(M)); an absent token has probability 0.

    Returns NaN when neither "m" nor "M" is among the tokens (SCORING_SPECS §4).
    """
    logps: dict[str, float] = {}
    for entry in top_logprobs:
        logps.setdefault(entry["token"], float(entry["logprob"]))  # first one if repeated
    probabilities = {token: math.exp(logps[token]) if token in logps else 0.0
                     for token in (ALPACA_EVAL_TOKEN_OUTPUT_1, ALPACA_EVAL_TOKEN_OUTPUT_2)}
    total = probabilities[ALPACA_EVAL_TOKEN_OUTPUT_1] + probabilities[ALPACA_EVAL_TOKEN_OUTPUT_2]
    if total == 0.0:
        return math.nan
    return probabilities[ALPACA_EVAL_TOKEN_OUTPUT_1] / total


def alpaca_eval_preference(top_logprobs: Sequence[Mapping[str, Any]], *,
                           is_switched: bool) -> float:
    """preference = 2 - p_m in [1, 2] (2: output_2 preferred); 3 - that if swapped.

    NaN when the judge named neither identifier; such rows are dropped when scoring.
    """
    preference = 2.0 - alpaca_eval_probability_m(top_logprobs)
    return 3.0 - preference if is_switched else preference


def alpaca_eval_annotation_preference(instruction: str, output_1: str, output_2: str,
                                      top_logprobs: Sequence[Mapping[str, Any]] | None,
                                      seed: int = 0) -> float:
    """The preference of one annotation: 1.5 for identical outputs (no judge call needed),
    else the logprob preference with the swap rule of ``alpaca_eval_is_switched``."""
    if output_1 == output_2:
        return IDENTICAL_OUTPUTS_PREFERENCE
    if top_logprobs is None:
        raise ValueError(
            "the outputs differ but no top logprobs were given; judge the pair first "
            "(only identical outputs are scored without a judgment).")
    return alpaca_eval_preference(top_logprobs,
                                  is_switched=alpaca_eval_is_switched(instruction, seed))


def normalise_legacy_preference(preference: float) -> float:
    """Legacy annotation files store a draw as 0; it means 1.5 (SCORING_SPECS §4)."""
    return IDENTICAL_OUTPUTS_PREFERENCE if preference == _LEGACY_DRAW_PREFERENCE else preference
