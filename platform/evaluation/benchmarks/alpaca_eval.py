"""AlpacaEval 2.0 against the GPT-4-Turbo reference outputs (SCORING_SPECS §4).

Per instruction the judge sees the baseline (output_1, "m") and the model (output_2,
"M"), swapped by the deterministic per-instruction rule, and names the better one in a
single token; the preference comes from the top-5 logprobs of that token. A reply whose
top tokens hold neither identifier is unparseable (NaN preference, dropped). Reported:
the raw win rate and the length-controlled one, from a ``length_controlled_noreg`` fit
of these annotations with the shipped instruction difficulties.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence

from platform.evaluation import aggregate, prompts
from platform.evaluation.benchmarks.base import Benchmark
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
from platform.evaluation.verdicts import (
    IDENTICAL_OUTPUTS_PREFERENCE,
    alpaca_eval_is_switched,
    alpaca_eval_preference,
    top_logprobs_of_reply,
)

logger = logging.getLogger(__name__)

REFERENCE_FILE = "alpaca_eval/reference_outputs/gpt4_1106_preview_model_outputs.json"
DIFFICULTY_FILE = "alpaca_eval/length_controlled/instruction_difficulty_DERIVED_APPROX.csv"
GLM_WEIGHTS_FILE = ("alpaca_eval/length_controlled/glm_weights_weighted_alpaca_eval_gpt4_"
                    "turbo_length_controlled_v1_baseline_gpt4_1106_preview.csv")
# weighted_alpaca_eval_gpt4_turbo: one token, temperature 1, the top 5 alternatives.
JUDGE_TEMPERATURE, JUDGE_MAX_TOKENS, JUDGE_TOP_LOGPROBS = 1.0, 1, 5
AVERAGE_LENGTH = "alpaca_eval/avg_length"  # characters of the model's outputs
LC_VERSUS_PREFIX = "alpaca_eval/lc_win_rate_vs/"
_RAW_METRICS = (aggregate.ALPACA_EVAL_WIN_RATE, aggregate.ALPACA_EVAL_STANDARD_ERROR,
                aggregate.ALPACA_EVAL_DISCRETE_WIN_RATE)
_LC_METRICS = (aggregate.ALPACA_EVAL_LC_WIN_RATE, aggregate.ALPACA_EVAL_LC_STANDARD_ERROR)


class AlpacaEvalBenchmark(Benchmark):
    name = "alpaca_eval"
    default_max_tokens = 2048

    def load(self) -> int:
        records = json.loads(self.path(REFERENCE_FILE).read_text(encoding="utf-8"))
        # The list position is the instruction's index in the GLM (difficulty d_i).
        self.rows = self.limited([(index, r) for index, r in enumerate(records)])
        self.difficulty = aggregate.load_instruction_difficulty(self.path(DIFFICULTY_FILE))
        self.judge_prompt = prompts.load_alpaca_eval_prompt(self.data_dir)
        compare = self.config.alpaca_eval.compare_with
        weights = aggregate.load_glm_weights(self.path(GLM_WEIGHTS_FILE)) if compare else {}
        unknown = sorted(set(compare) - set(weights))
        if unknown:
            raise ValueError(f"alpaca_eval.compare_with: no shipped GLM weights for "
                             f"{unknown}; known models include {sorted(weights)[:8]}...")
        self.published = {name: weights[name] for name in compare}
        return len(self.rows)

    def conversations(self) -> list[Conversation]:
        generation = self.config.generation
        return [Conversation(str(index), (row["instruction"],), self.max_tokens,
                             generation.temperature, generation.top_p)
                for index, row in self.rows]

    def score(self, answers: Sequence[Sequence[Generation]], judge: Judge) -> BenchmarkResult:
        seed = self.config.alpaca_eval.seed
        outputs = [generations[0].text for generations in answers]
        to_judge = [i for i, ((_, row), out) in enumerate(zip(self.rows, outputs, strict=True))
                    if out != row["output"]]  # identical outputs are a draw, unjudged
        requests = [prompts.alpaca_eval_messages(
            self.judge_prompt, self.rows[i][1]["instruction"],
            self.rows[i][1]["output"], outputs[i],
            is_switched=alpaca_eval_is_switched(self.rows[i][1]["instruction"], seed))
            for i in to_judge]
        sampling = judge.sampling(temperature=JUDGE_TEMPERATURE, max_tokens=JUDGE_MAX_TOKENS,
                                  logprobs=True, top_logprobs=JUDGE_TOP_LOGPROBS)
        replies = dict(zip(to_judge, judge.complete(requests, sampling), strict=True))
        preferences, records = [], []
        for i, (index, row) in enumerate(self.rows):
            preference, record = self._preference(index, row, replies.get(i), seed)
            preferences.append(preference)
            if record is not None:
                records.append(record)
        return self._result(answers, outputs, preferences, records)

    @staticmethod
    def _preference(index: int, row: dict, reply, seed: int) -> tuple[float, dict | None]:
        if reply is None:
            return IDENTICAL_OUTPUTS_PREFERENCE, None
        if not reply.ok:
            return math.nan, judgment_record(reply, FAILED, question_id=index)
        switched = alpaca_eval_is_switched(row["instruction"], seed)
        try:
            preference = alpaca_eval_preference(top_logprobs_of_reply(reply.choice),
                                                is_switched=switched)
        except ValueError as error:  # the endpoint sent no logprobs
            record = judgment_record(reply, UNPARSEABLE, question_id=index)
            return math.nan, {**record, "error": str(error)}
        status = UNPARSEABLE if math.isnan(preference) else SCORED
        top = [entry["token"] for entry in top_logprobs_of_reply(reply.choice)]
        return preference, judgment_record(reply, status, question_id=index,
                                           is_switched=switched, top_tokens=top,
                                           preference=preference)

    def _result(self, answers, outputs, preferences, records) -> BenchmarkResult:
        notes: list[str] = []
        baseline = [row["output"] for _, row in self.rows]
        metrics = self._raw(preferences, notes) | self._length_controlled(
            baseline, outputs, preferences, notes)
        metrics[AVERAGE_LENGTH] = sum(map(len, outputs)) / max(len(outputs), 1)
        answer_records = [answer_record(index, generations, instruction=row["instruction"])
                          for (index, row), generations in zip(self.rows, answers,
                                                               strict=True)]
        return BenchmarkResult(self.name, metrics, len(self.rows), answer_records, records,
                               notes)

    @staticmethod
    def _raw(preferences: list[float], notes: list[str]) -> dict[str, float]:
        try:
            return aggregate.alpaca_eval_win_rate(preferences).as_metrics()
        except ValueError as error:
            notes.append(f"no raw win rate: {error}")
            return nan_metrics(_RAW_METRICS)

    def _length_controlled(self, baseline, outputs, preferences, notes) -> dict[str, float]:
        judged = sum(not math.isnan(p) for p in preferences)
        if judged < aggregate.LC_CV_SPLITS:
            notes.append(f"no length-controlled win rate: its GLM is fitted with "
                         f"{aggregate.LC_CV_SPLITS}-fold CV and needs at least "
                         f"{aggregate.LC_CV_SPLITS} judged instructions, got {judged}.")
            return nan_metrics(_LC_METRICS)
        fit = aggregate.fit_length_controlled_noreg(
            baseline, outputs, preferences, self.difficulty,
            instruction_index=[index for index, _ in self.rows])
        metrics = fit.result.as_metrics()
        for name, weights in self.published.items():
            versus = aggregate.lc_win_rate(fit.weights, self.difficulty, versus=weights)
            metrics[LC_VERSUS_PREFIX + name] = versus.lc_win_rate
        return metrics
