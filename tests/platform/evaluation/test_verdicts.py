"""Judge-reply parsing against every form SCORING_SPECS documents, and the shipped
AlpacaEval annotations recomputed from their raw judge logprobs."""

from __future__ import annotations

import json
import math
import random

import pytest

from platform.evaluation import verdicts
from platform.evaluation.verdicts import ArenaHardOutcome, PairwiseVerdict
from tests.conftest import SHARED_DATA

ALPACA_7B = (SHARED_DATA / "alpaca_eval" / "annotations_example"
             / "alpaca-7b__weighted_alpaca_eval_gpt4_turbo__annotations.json")


# MT-Bench single-answer score (§1) -----------------------------------------------------


@pytest.mark.parametrize("reply, expected", [
    ("The answer is fine. Rating: [[7]]", 7.0),
    ("Rating: [[8.5]]", 8.5),
    ("Rating: [[10]] and later [[3]]", 10.0),  # first [[x]] match
    ("Rating: [6] then [[9]]", 9.0),  # [[x]] is searched first, anywhere in the text
    ("Rating: [6] and [2]", 6.0),  # fallback: first [x]
    ("Rating: 7/10", -1.0),  # no brackets: invalid
    ("Rating: [[seven]]", -1.0),  # not a number
    ("", -1.0),
])
def test_mt_bench_score(reply, expected):
    assert verdicts.parse_mt_bench_score(reply) == expected


# Pairwise [[A]] / [[B]] / [[C]] (§2) ---------------------------------------------------


@pytest.mark.parametrize("reply, expected", [
    ("My final verdict: [[A]]", PairwiseVerdict.A),
    ("[[B]]", PairwiseVerdict.B),
    ("It is a tie: [[C]]", PairwiseVerdict.TIE),
    ("Not [[B]] but [[A]]", PairwiseVerdict.A),  # substring order: [[A]] is tested first
    ("[[C]] or maybe [[B]]", PairwiseVerdict.B),  # [[B]] before [[C]]
    ("Assistant A is better.", PairwiseVerdict.ERROR),
    ("[A]", PairwiseVerdict.ERROR),  # single brackets do not count
])
def test_pairwise_verdict(reply, expected):
    assert verdicts.parse_pairwise_verdict(reply) is expected


# Arena-Hard (§3) -----------------------------------------------------------------------


@pytest.mark.parametrize("label", verdicts.ARENA_HARD_LABELS)
def test_arena_hard_v01_each_label(label):
    parsed = verdicts.parse_arena_hard_v01(f"My final verdict is: [[{label}]]")
    assert parsed == verdicts.ArenaHardParse(ArenaHardOutcome.LABEL, label)


@pytest.mark.parametrize("reply, outcome, label", [
    ("First [[A>B]], and to repeat, [[A>B]].", ArenaHardOutcome.LABEL, "A>B"),  # one distinct
    ("[[A>B]] ... on reflection [[B>A]]", ArenaHardOutcome.INVALID, None),  # several distinct
    ("Assistant B is better: [B>A]", ArenaHardOutcome.MISSING, None),  # v0.1 wants [[...]]
    ("No verdict yet.", ArenaHardOutcome.MISSING, None),
    ("[[A]]", ArenaHardOutcome.INVALID, None),  # a match, but not a verdict label
])
def test_arena_hard_v01_forms(reply, outcome, label):
    assert verdicts.parse_arena_hard_v01(reply) == verdicts.ArenaHardParse(outcome, label)


def test_arena_hard_v01_continuation_is_parsed_on_the_concatenation():
    first = "Let me compare both answers in detail"
    second = "... so Assistant A is slightly better: [[A>B]]"
    assert verdicts.parse_arena_hard_v01(first).outcome is ArenaHardOutcome.MISSING
    assert verdicts.parse_arena_hard_v01(first + second).label == "A>B"


@pytest.mark.parametrize("reply, expected", [
    ("[[A>B]] ... on reflection [[B>A]]", "B>A"),  # last match, not invalid
    ("verdict: [[a>>b]]", "A>>B"),  # upper-cased first
    ("only single brackets [A=B] then [B>A]", "B>A"),  # fallback: last [...]
    ("[[A>B]] and [B>>A]", "A>B"),  # a [[...]] match wins over the fallback
    ("no label", None),
])
def test_arena_hard_current(reply, expected):
    assert verdicts.parse_arena_hard_current(reply) == expected


# AlpacaEval (§4) -----------------------------------------------------------------------


def _top(**logprobs: float) -> list[dict]:
    return [{"token": token, "logprob": value} for token, value in logprobs.items()]


def test_alpaca_eval_probability_m_by_hand():
    # e^-1 / (e^-1 + e^-2) = 1 / (1 + e^-1) = 0.7310585786
    top = _top(m=-1.0, M=-2.0, The=-3.0)
    assert verdicts.alpaca_eval_probability_m(top) == pytest.approx(1 / (1 + math.exp(-1)))
    assert verdicts.alpaca_eval_probability_m(_top(m=-5.0, Based=-0.1)) == 1.0  # M absent
    assert verdicts.alpaca_eval_probability_m(_top(M=-0.2)) == 0.0  # m absent
    assert math.isnan(verdicts.alpaca_eval_probability_m(_top(The=-0.1, Based=-2.0)))


def test_alpaca_eval_preference_and_swap():
    top = _top(m=math.log(0.25), M=math.log(0.75))  # p_m = 0.25
    assert verdicts.alpaca_eval_preference(top, is_switched=False) == pytest.approx(1.75)
    # swapped: the judge saw output_2 as "m", so 3 - 1.75
    assert verdicts.alpaca_eval_preference(top, is_switched=True) == pytest.approx(1.25)
    assert math.isnan(verdicts.alpaca_eval_preference(_top(x=0.0), is_switched=True))


def test_alpaca_eval_identical_outputs_and_legacy_draw():
    same = verdicts.alpaca_eval_annotation_preference("q", "same", "same", None)
    assert same == verdicts.IDENTICAL_OUTPUTS_PREFERENCE == 1.5
    assert verdicts.normalise_legacy_preference(0.0) == 1.5
    assert verdicts.normalise_legacy_preference(1.2) == 1.2
    with pytest.raises(ValueError, match="no top logprobs"):
        verdicts.alpaca_eval_annotation_preference("q", "a", "b", None)


def test_alpaca_eval_swap_rule_is_the_seeded_python_draw():
    instruction = "Write a haiku about rain."
    expected = random.Random("is_switched_outputs" + instruction + "0").choices(
        [False, True])[0]
    assert verdicts.alpaca_eval_is_switched(instruction) is expected
    flips = [verdicts.alpaca_eval_is_switched(f"instruction {i}") for i in range(200)]
    assert 60 < sum(flips) < 140  # a fair coin per instruction, not a constant


def test_reply_without_logprobs_is_refused():
    with pytest.raises(ValueError, match="top_logprobs=5"):
        verdicts.top_logprobs_of_reply({"message": {"content": "m"}})


def test_shipped_alpaca_7b_preferences_recomputed_from_raw_logprobs():
    """Every shipped preference follows from its raw top-5 logprobs and the swap rule."""
    if not ALPACA_7B.is_file():
        pytest.skip(f"benchmark data not found at {ALPACA_7B}")
    annotations = json.loads(ALPACA_7B.read_text())
    recomputed, switched = [], 0
    for row in annotations:
        raw = row["raw_completion"]
        top = None if raw is None else verdicts.top_logprobs_of_reply(raw)
        recomputed.append(verdicts.alpaca_eval_annotation_preference(
            row["instruction"], row["output_1"], row["output_2"], top))
        switched += verdicts.alpaca_eval_is_switched(row["instruction"])
    shipped = [row["preference"] for row in annotations]
    assert recomputed == pytest.approx(shipped, abs=1e-9)
    # 3 identical pairs carry no judgment; both orders occur among the rest.
    assert sum(row["raw_completion"] is None for row in annotations) == 3
    assert 300 < switched < 500
