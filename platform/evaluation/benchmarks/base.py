"""The shape every benchmark has: questions in, conversations out, answers judged and scored."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from platform.evaluation.generation import Conversation, Generation
from platform.evaluation.judging import BenchmarkResult, Judge
from platform.evaluation.settings import EvalConfig

EVALUATED = "model"  # the evaluated model's name in the aggregate functions


class Benchmark(ABC):
    """One benchmark of one evaluation; ``load`` first, then the other methods."""

    name: ClassVar[str]
    default_max_tokens: ClassVar[int]  # the answer length its protocol allows

    def __init__(self, config: EvalConfig) -> None:
        self.config = config
        self.data_dir = config.data_dir

    @abstractmethod
    def load(self) -> int:
        """Read the questions (the first ``config.limit``); returns how many."""

    @abstractmethod
    def conversations(self) -> list[Conversation]:
        """What the model must answer, one conversation per question."""

    @abstractmethod
    def score(self, answers: Sequence[Sequence[Generation]], judge: Judge) -> BenchmarkResult:
        """Judge the answers (in ``conversations`` order) and aggregate the verdicts."""

    @property
    def max_tokens(self) -> int:
        cap = self.config.generation.max_tokens
        return self.default_max_tokens if cap is None else min(cap, self.default_max_tokens)

    def limited(self, items: Sequence[Any]) -> list[Any]:
        limit = self.config.limit
        return list(items if limit is None else items[:limit])

    def path(self, relative: str) -> Path:
        path = self.data_dir / relative
        if not path.is_file():
            raise FileNotFoundError(
                f"{self.name}: {path} does not exist; data_dir must be the benchmark folder "
                "described in SOURCES.md (judge_prompts/, mt_bench/, alpaca_eval/, "
                "arena_hard/).")
        return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every record of a JSON Lines file; a bad line is an error that names it."""
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number} is not JSON ({error}); restore the file as "
                             "SOURCES.md names it.") from error
    return records
