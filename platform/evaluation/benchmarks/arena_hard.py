"""Arena-Hard v0.1: pairwise against the gpt-4-0314 baseline answers (SCORING_SPECS §3).

Two games per prompt (game 1: A = baseline, B = model; game 2 swapped), judged with the
v0.1 rule behind the published leaderboard: every ``[[label]]`` of the reply must agree;
with none, the judge is asked to finish its judgment (at most the configured number of
attempts in all). Strong verdicts weigh 3, invalid games are dropped, and the score is
the Bradley-Terry win rate against the baseline with a bootstrap confidence interval.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from platform.evaluation import aggregate, prompts
from platform.evaluation.benchmarks.base import EVALUATED, Benchmark, read_jsonl
from platform.evaluation.generation import Conversation, Generation
from platform.evaluation.judge_client import JudgeResult
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
from platform.evaluation.verdicts import ArenaHardOutcome, ArenaHardParse, parse_arena_hard_v01

logger = logging.getLogger(__name__)

QUESTION_FILE = "arena_hard/v0.1/question.jsonl"
BASELINE_FILE = "arena_hard/v0.1/model_answer/gpt-4-0314.jsonl"
BASELINE = "gpt-4-0314"
ANSWER_TEMPERATURE = 0.0  # SCORING_SPECS §3: answers and judgments are greedy
JUDGE_TEMPERATURE, JUDGE_MAX_TOKENS = 0.0, 4096
AVERAGE_TOKENS = "arena_hard/avg_tokens"  # in the evaluated model's own tokenizer
_METRICS = (aggregate.ARENA_HARD_SCORE, aggregate.ARENA_HARD_CI_LOWER,
            aggregate.ARENA_HARD_CI_UPPER, aggregate.ARENA_HARD_RATING)


def baseline_answer(record: dict) -> str:
    """The answer text of a current-format model_answer record."""
    content = record["messages"][-1]["content"]
    return content["answer"] if isinstance(content, dict) else content


class ArenaHardBenchmark(Benchmark):
    name = "arena_hard"
    default_max_tokens = 4096

    def load(self) -> int:
        self.questions = self.limited(read_jsonl(self.path(QUESTION_FILE)))
        answers = {r["uid"]: baseline_answer(r) for r in read_jsonl(self.path(BASELINE_FILE))}
        missing = [q["uid"] for q in self.questions if q["uid"] not in answers]
        if missing:
            raise ValueError(f"arena_hard: no {BASELINE} answer for questions {missing[:5]} "
                             f"in {BASELINE_FILE}; restore the file as SOURCES.md names it.")
        self.baseline = [answers[q["uid"]] for q in self.questions]
        self.judge_prompt = prompts.load_arena_hard_prompt(self.data_dir)
        return len(self.questions)

    def conversations(self) -> list[Conversation]:
        return [Conversation(q["uid"], (q["prompt"],), self.max_tokens, ANSWER_TEMPERATURE,
                             self.config.generation.top_p) for q in self.questions]

    def score(self, answers: Sequence[Sequence[Generation]], judge: Judge) -> BenchmarkResult:
        games = []
        for question, baseline, generations in zip(self.questions, self.baseline, answers,
                                                   strict=True):
            answer = generations[0].text
            games += [prompts.arena_hard_messages(self.judge_prompt, question["prompt"],
                                                  baseline, answer),
                      prompts.arena_hard_messages(self.judge_prompt, question["prompt"],
                                                  answer, baseline)]
        outcomes = self._judge_games(games, judge)
        judgments, records = [], []
        for index, question in enumerate(self.questions):
            labels = []
            for game in (1, 2):
                text, parse, reply = outcomes[2 * index + game - 1]
                status = FAILED if not reply.ok else (
                    SCORED if parse.outcome is ArenaHardOutcome.LABEL else UNPARSEABLE)
                labels.append(parse.label if status == SCORED else None)
                records.append({**judgment_record(reply, status, question_id=question["uid"],
                                                  game=game, verdict=parse.label,
                                                  outcome=parse.outcome.value),
                                "reply": text})
            judgments.append(aggregate.ArenaHardJudgment(question["uid"], EVALUATED, *labels))
        return self._result(answers, judgments, records)

    def _judge_games(self, games: list[list[dict[str, str]]], judge: Judge
                     ) -> list[tuple[str, ArenaHardParse, JudgeResult]]:
        """(all replies joined, their v0.1 reading, the last reply) per game."""
        sampling = judge.sampling(temperature=JUDGE_TEMPERATURE, max_tokens=JUDGE_MAX_TOKENS)
        conversations = [list(messages) for messages in games]
        texts = [""] * len(games)
        parses = [ArenaHardParse(ArenaHardOutcome.MISSING)] * len(games)
        last: list[JudgeResult | None] = [None] * len(games)
        pending = list(range(len(games)))
        for attempt in range(1, self.judge_prompt.max_attempts + 1):
            replies = judge.complete([conversations[i] for i in pending], sampling)
            again = []
            for i, reply in zip(pending, replies, strict=True):
                last[i] = reply
                if not reply.ok:
                    continue
                # v0.1 reads the replies of all attempts together, each after a newline.
                texts[i] += "\n" + reply.content
                parses[i] = parse_arena_hard_v01(texts[i])
                if parses[i].outcome is ArenaHardOutcome.MISSING:
                    conversations[i] = prompts.arena_hard_continuation(
                        self.judge_prompt, conversations[i], reply.content)
                    again.append(i)
            pending = again
            if not pending:
                break
            logger.info("arena_hard: %d game(s) without a verdict after attempt %d",
                        len(pending), attempt)
        return list(zip(texts, parses, last, strict=True))

    def _result(self, answers, judgments, records) -> BenchmarkResult:
        settings, notes = self.config.arena_hard, []
        battles = aggregate.arena_hard_battles(judgments, BASELINE)
        lengths = [float(generations[0].n_tokens) for generations in answers]
        if battles:
            result = aggregate.arena_hard_scores(
                battles, BASELINE, n_bootstrap=settings.n_bootstrap, seed=settings.seed,
                answer_lengths={EVALUATED: lengths})[EVALUATED]
            metrics = result.as_metrics() | {AVERAGE_TOKENS: result.average_length}
        else:
            notes.append("no game had a valid verdict; the Arena-Hard scores are NaN.")
            metrics = nan_metrics(_METRICS) | {
                AVERAGE_TOKENS: sum(lengths) / max(len(lengths), 1)}
        answer_records = [answer_record(q["uid"], generations, prompt=q["prompt"])
                          for q, generations in zip(self.questions, answers, strict=True)]
        return BenchmarkResult(self.name, metrics, len(self.questions), answer_records,
                               records, notes)
