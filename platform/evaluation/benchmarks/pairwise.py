"""Pairwise win rate against the reference completions of a test split (the paper's metric).

The judge sees the paper's prompt (figure 5) twice per prompt: game 1 with the model's
answer as A and the reference as B, game 2 swapped. Both games naming the model make a
win, both naming the reference a loss; anything else (disagreement, a tie) is a tie
(SCORING_SPECS §2). The reference of a prompt is its first thumbs-up completion (the
``chosen`` reply of a pair, a thumbs-up binary row, a scored row over the threshold).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from platform.evaluation import aggregate, prompts
from platform.evaluation.benchmarks.base import EVALUATED, Benchmark
from platform.evaluation.generation import Conversation, Generation
from platform.evaluation.judging import (
    FAILED,
    SCORED,
    UNPARSEABLE,
    BenchmarkResult,
    Judge,
    answer_record,
    judgment_record,
    nan_metrics,
)
from platform.evaluation.verdicts import PairwiseVerdict, parse_pairwise_verdict

logger = logging.getLogger(__name__)

REFERENCE = "reference"
JUDGE_TEMPERATURE, JUDGE_MAX_TOKENS = 0.0, 2048  # FastChat's pairwise judging
_METRICS = (aggregate.PAIRWISE_WIN_RATE, aggregate.PAIRWISE_LOSS_RATE,
            aggregate.PAIRWISE_WIN_RATE_ADJUSTED)


@dataclass(frozen=True)
class PairwiseItem:
    question_id: str
    turns: tuple[dict[str, str], ...]  # the prompt as chat turns, ending with a user turn
    reference: str


def prompt_turns(prompt: str, chat: bool) -> tuple[dict[str, str], ...]:
    """A normal row's prompt as chat turns (a chat prompt is the JSON text of its turns)."""
    if not chat:
        return ({"role": "user", "content": prompt},)
    return tuple({"role": t["role"], "content": t["content"]} for t in json.loads(prompt))


def conversation_text(turns: Sequence[dict[str, str]]) -> str:
    """The ``[Conversation]`` block of the judge prompt: a lone user turn as is."""
    if len(turns) == 1:
        return turns[0]["content"]
    return "\n\n".join(f"{t['role'].capitalize()}: {t['content']}" for t in turns)


def references_of(rows: Sequence[dict], test_only: bool) -> tuple[list[PairwiseItem], int]:
    """One item per prompt with a thumbs-up reply, in file order; also the prompts without."""
    items: dict[str, PairwiseItem] = {}
    without: set[str] = set()
    ordered = sorted(rows, key=lambda row: (row["source"], row["line"]))
    for row in ordered:
        if row["problem"] or (test_only and row["split"] != "test"):
            continue
        reference = row["chosen"] if row["kind"] == "paired" else (
            row["completion"] if row["label"] else "")
        key = str(row["prompt_hash"])
        if not reference:
            without.add(key)
            continue
        if key not in items:
            items[key] = PairwiseItem(key, prompt_turns(row["prompt"], row["chat"]), reference)
    return list(items.values()), len(without - set(items))


class PairwiseBenchmark(Benchmark):
    name = "pairwise"
    default_max_tokens = 2048

    def load(self) -> int:
        from platform.config import DataConfig
        from platform.data import synthetic
        from platform.data.sources import read_rows

        settings = self.config.pairwise
        entries = [str(synthetic.materialize_builtin_dataset(entry, "test"))
                   if synthetic.is_builtin_dataset(entry) and settings.test_fraction == 0
                   else entry for entry in settings.data]
        data = DataConfig(train=entries, format=settings.format, on_bad_row="skip",
                          test_fraction=settings.test_fraction,
                          split_seed=settings.split_seed)
        items, without = references_of(read_rows(data).take_all(),
                                       test_only=settings.test_fraction > 0)
        if not items:
            raise ValueError(f"pairwise: no prompt with a thumbs-up reference in "
                             f"{settings.data} (test_fraction={settings.test_fraction}); "
                             "give feedback data with chosen or thumbs-up replies.")
        if without:
            logger.info("pairwise: %d test prompt(s) have no thumbs-up reply to compare "
                        "with and are left out", without)
        self.items = self.limited(items)
        return len(self.items)

    def conversations(self) -> list[Conversation]:
        generation = self.config.generation
        return [Conversation(item.question_id, (item.turns[-1]["content"],),
                             self.max_tokens, generation.temperature, generation.top_p,
                             history=item.turns[:-1]) for item in self.items]

    def score(self, answers: Sequence[Sequence[Generation]], judge: Judge) -> BenchmarkResult:
        requests = []
        for item, generations in zip(self.items, answers, strict=True):
            text, answer = conversation_text(item.turns), generations[0].text
            requests += [prompts.paper_pairwise_messages(text, answer, item.reference),
                         prompts.paper_pairwise_messages(text, item.reference, answer)]
        replies = judge.complete(requests, judge.sampling(temperature=JUDGE_TEMPERATURE,
                                                          max_tokens=JUDGE_MAX_TOKENS))
        judgments, records = [], []
        for index, item in enumerate(self.items):
            games = []
            for game, reply in enumerate(replies[2 * index:2 * index + 2], start=1):
                verdict = parse_pairwise_verdict(reply.content) if reply.ok else None
                status = FAILED if verdict is None else (
                    UNPARSEABLE if verdict is PairwiseVerdict.ERROR else SCORED)
                games.append(verdict or PairwiseVerdict.ERROR)
                records.append(judgment_record(reply, status, question_id=item.question_id,
                                               game=game, verdict=getattr(verdict, "value",
                                                                          None)))
            judgments.append(aggregate.PairwiseJudgment(item.question_id, EVALUATED,
                                                        REFERENCE, *games))
        return self._result(answers, judgments, records)

    def _result(self, answers, judgments, records) -> BenchmarkResult:
        rates = aggregate.pairwise_win_rates(judgments, baseline=REFERENCE)
        notes = []
        if EVALUATED in rates:
            metrics = rates[EVALUATED].as_metrics()
        else:
            metrics = nan_metrics(_METRICS)
            notes.append("no pair had two parsed verdicts; the win rates are NaN.")
        answer_records = [answer_record(item.question_id, generations,
                                        prompt=list(item.turns), reference=item.reference)
                          for item, generations in zip(self.items, answers, strict=True)]
        return BenchmarkResult(self.name, metrics, len(self.items), answer_records, records,
                               notes)
