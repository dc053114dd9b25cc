"""MT-Bench single-answer grading (SCORING_SPECS §1).

Each question has two turns; turn 2 is asked after the model's own turn-1 answer, with
the category's temperature. The judge rates each turn 1-10: turn 1 from the question and
answer, turn 2 from the whole conversation, and math, reasoning and coding against the
reference answers. A reply without a rating is unparseable and dropped from the score.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from platform.evaluation import aggregate, prompts
from platform.evaluation.benchmarks.base import EVALUATED, Benchmark, read_jsonl
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
from platform.evaluation.verdicts import MT_BENCH_INVALID_SCORE, parse_mt_bench_score

logger = logging.getLogger(__name__)

QUESTION_FILE = "mt_bench/question.jsonl"
# SCORING_SPECS §1: answer temperature by category; any other category gets 0.7.
CATEGORY_TEMPERATURES = {"writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0,
                         "coding": 0.0, "reasoning": 0.0, "stem": 0.1, "humanities": 0.1}
OTHER_CATEGORY_TEMPERATURE = 0.7
JUDGE_TEMPERATURE, JUDGE_MAX_TOKENS = 0.0, 2048
_METRICS = (aggregate.MT_BENCH_SCORE, aggregate.MT_BENCH_TURN_1, aggregate.MT_BENCH_TURN_2)


def category_temperature(category: str) -> float:
    return CATEGORY_TEMPERATURES.get(category, OTHER_CATEGORY_TEMPERATURE)


class MtBenchBenchmark(Benchmark):
    name = "mt_bench"
    default_max_tokens = 1024  # FastChat's max_new_tokens

    def load(self) -> int:
        self.questions = self.limited(read_jsonl(self.path(QUESTION_FILE)))
        self.judge_prompts = prompts.load_fastchat_prompts(self.data_dir)
        needs_reference = any(q["category"] in prompts.MT_BENCH_REFERENCE_CATEGORIES
                              for q in self.questions)
        self.references = prompts.load_mt_bench_references(
            self.data_dir, self.config.mt_bench.reference_model) if needs_reference else {}
        return len(self.questions)

    def conversations(self) -> list[Conversation]:
        return [Conversation(str(q["question_id"]), tuple(q["turns"]), self.max_tokens,
                             category_temperature(q["category"]),
                             self.config.generation.top_p)
                for q in self.questions]

    def _reference(self, question: dict) -> list[str] | None:
        if question["category"] not in prompts.MT_BENCH_REFERENCE_CATEGORIES:
            return None
        reference = self.references.get(int(question["question_id"]))
        if reference is None:
            raise ValueError(
                f"mt_bench: question {question['question_id']} ({question['category']}) "
                f"has no reference answer in mt_bench/reference_answer/"
                f"{self.config.mt_bench.reference_model}.jsonl; pick another "
                "mt_bench.reference_model.")
        return reference

    def score(self, answers: Sequence[Sequence[Generation]], judge: Judge) -> BenchmarkResult:
        requests, keys = [], []
        for question, generations in zip(self.questions, answers, strict=True):
            texts = [generation.text for generation in generations]
            for turn in (1, 2):
                requests.append(prompts.mt_bench_single_messages(
                    self.judge_prompts, question, texts, turn, self._reference(question)))
                keys.append((int(question["question_id"]), turn))
        replies = judge.complete(requests, judge.sampling(temperature=JUDGE_TEMPERATURE,
                                                          max_tokens=JUDGE_MAX_TOKENS))
        rows, records = [], []
        for (question_id, turn), reply in zip(keys, replies, strict=True):
            rating = parse_mt_bench_score(reply.content) if reply.ok else None
            if rating is None:
                status = FAILED
            else:
                status = UNPARSEABLE if rating == MT_BENCH_INVALID_SCORE else SCORED
                rows.append(aggregate.MtBenchJudgment(question_id, EVALUATED, turn, rating))
            records.append(judgment_record(reply, status, question_id=question_id,
                                           turn=turn, score=rating))
        result = aggregate.mt_bench_scores(rows).get(EVALUATED)
        notes = []
        if result is None or result.n_judgments == 0:
            metrics = nan_metrics(_METRICS)
            notes.append("no judgment carried a rating; the MT-Bench scores are NaN.")
        else:
            metrics = result.as_metrics()
        answer_records = [answer_record(q["question_id"], generations,
                                        category=q["category"], turns=q["turns"])
                          for q, generations in zip(self.questions, answers, strict=True)]
        return BenchmarkResult(self.name, metrics, len(self.questions), answer_records,
                               records, notes)
