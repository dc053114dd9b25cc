"""What every benchmark shares when it judges: the judge, outcomes and their counts.

A judgment ends in one of three states, and all three are counted and kept:

* ``scored``: the reply parsed and enters the benchmark's score;
* ``unparseable``: a reply came back but held no verdict the benchmark's rule accepts;
* ``failed``: no reply (the judge was down, rate-limited past the retries, timed out, or
  refused the request, e.g. a prompt longer than its context).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from platform.evaluation.generation import Generation, generation_record
from platform.evaluation.judge_client import JudgeClient, JudgeResult, SamplingParams

logger = logging.getLogger(__name__)

SCORED, UNPARSEABLE, FAILED = "scored", "unparseable", "failed"
METRIC_PREFIX = "eval/"
# Counts logged beside every benchmark's scores, as eval/<benchmark>/<count>.
N_QUESTIONS = "n_questions"
N_JUDGMENTS = "n_judgments"
N_SCORED = "n_scored"
N_UNPARSEABLE = "n_unparseable"
N_FAILED = "n_failed"
N_PROMPTS_TRUNCATED = "n_prompts_truncated"


def metric_key(name: str) -> str:
    """MLflow key of a benchmark metric: ``mt_bench/score`` -> ``eval/mt_bench/score``."""
    return METRIC_PREFIX + name


class Judge:
    """A :class:`JudgeClient` plus the evaluation's cap on the judge's reply length."""

    def __init__(self, client: JudgeClient, max_tokens_cap: int | None,
                 identity: dict[str, str]) -> None:
        self.client = client
        self.max_tokens_cap = max_tokens_cap
        self.identity = identity  # what the run records about the judge (never the key)

    def sampling(self, *, temperature: float, max_tokens: int, logprobs: bool = False,
                 top_logprobs: int | None = None) -> SamplingParams:
        """A benchmark's judge sampling, the reply length capped."""
        cap = self.max_tokens_cap
        return SamplingParams(temperature=temperature,
                              max_tokens=max_tokens if cap is None else min(max_tokens, cap),
                              logprobs=logprobs, top_logprobs=top_logprobs)

    def complete(self, requests: Sequence[Sequence[dict[str, str]]],
                 sampling: SamplingParams) -> list[JudgeResult]:
        return self.client.complete(requests, sampling) if requests else []


@dataclass
class BenchmarkResult:
    """Scores, counts and the records of one benchmark."""

    name: str
    metrics: dict[str, float]  # keys as aggregate.py names them, e.g. "mt_bench/score"
    n_questions: int
    answers: list[dict[str, Any]]
    judgments: list[dict[str, Any]]  # each with "status" and, unless scored, "error"
    notes: list[str] = field(default_factory=list)  # why a score is missing, etc.

    def counts(self) -> dict[str, int]:
        statuses = Counter(record["status"] for record in self.judgments)
        truncated = sum(bool(turn.get("prompt_truncated")) for answer in self.answers
                        for turn in answer.get("generations", []))
        return {N_QUESTIONS: self.n_questions, N_JUDGMENTS: len(self.judgments),
                N_SCORED: statuses[SCORED], N_UNPARSEABLE: statuses[UNPARSEABLE],
                N_FAILED: statuses[FAILED], N_PROMPTS_TRUNCATED: truncated}

    def all_metrics(self) -> dict[str, float]:
        """Scores and counts under their MLflow keys."""
        values = {metric_key(name): float(value) for name, value in self.metrics.items()}
        values.update({metric_key(f"{self.name}/{name}"): float(count)
                       for name, count in self.counts().items()})
        return values

    def unjudged(self) -> list[dict[str, Any]]:
        """The judgments that did not enter the score, with why."""
        return [record for record in self.judgments if record["status"] != SCORED]

    def log_summary(self) -> None:
        counts = self.counts()
        scores = ", ".join(f"{k}={v:.4g}" for k, v in sorted(self.metrics.items())
                           if not k.endswith(("standard_error",)))
        log = logger.warning if counts[N_UNPARSEABLE] or counts[N_FAILED] else logger.info
        log("%s: %s; %d judgment(s): %d scored, %d unparseable, %d failed", self.name,
            scores or "no score", counts[N_JUDGMENTS], counts[N_SCORED],
            counts[N_UNPARSEABLE], counts[N_FAILED])
        for note in self.notes:
            logger.warning("%s: %s", self.name, note)


def judgment_record(result: JudgeResult, status: str, **fields: Any) -> dict[str, Any]:
    """One judgment as the artifact keeps it: the reply, its status, the error if any."""
    record = {**fields, "status": status, "reply": result.content,
              "cached": result.cached, "attempts": result.attempts}
    if not result.ok:
        record["error"] = result.error
    return record


def nan_metrics(keys: Sequence[str]) -> dict[str, float]:
    return {key: math.nan for key in keys}


def answer_record(key: Any, generations: Sequence[Generation], **fields: Any
                  ) -> dict[str, Any]:
    """One question's answers as the artifact keeps them."""
    return {"question_id": key, **fields,
            "generations": [generation_record(g) for g in generations]}
