"""Judge prompts: read from a data directory and filled in as chat messages.

The data directory is the benchmark folder (``shared/data`` in the repository's
deployment) holding ``judge_prompts/`` and ``mt_bench/``; see SCORING_SPECS for the rules
and SOURCES for the files. The only prompt kept in code is the pairwise judge prompt of
the BCO paper (figure 5), which the paper publishes for reuse.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}

FASTCHAT_PROMPTS_FILE = Path("judge_prompts") / "fastchat_llm_judge_prompts.jsonl"
ARENA_HARD_PROMPT_FILE = Path("judge_prompts") / "arena_hard_v0.1_judge.json"
ALPACA_EVAL_PROMPT_FILE = Path("judge_prompts") / "alpaca_eval_clf_gpt4_turbo_prompt.txt"
MT_BENCH_REFERENCE_DIR = Path("mt_bench") / "reference_answer"

# SCORING_SPECS §1: categories judged against a reference answer.
MT_BENCH_REFERENCE_CATEGORIES = frozenset({"math", "reasoning", "coding"})
_MT_BENCH_PROMPT_NAMES = {  # (needs reference, turn) -> FastChat prompt name
    (False, 1): "single-v1",
    (True, 1): "single-math-v1",
    (False, 2): "single-v1-multi-turn",
    (True, 2): "single-math-v1-multi-turn",
}

# The BCO paper's "LLM as a judge" prompt (figure 5), split as FastChat sends it: the
# instructions as the system message, the conversation and answers as the user message.
PAPER_PAIRWISE_SYSTEM_PROMPT = (
    "Please act as an impartial judge and evaluate the quality of the responses provided "
    "by two AI assistants to the conversation displayed below. You should choose the "
    "assistant that follows the user's instructions and answers the user's question "
    "better. Your evaluation should consider factors such as the helpfulness, relevance, "
    "accuracy, depth, creativity, and level of detail of their responses. Begin your "
    "evaluation by comparing the two responses and provide a short explanation. Avoid any "
    "position biases and ensure that the order in which the responses were presented does "
    "not influence your decision. Do not allow the length of the responses to influence "
    "your evaluation. Do not favor certain names of the assistants. Be as objective as "
    "possible. After providing your explanation, output your final verdict by strictly "
    "following this format: [[A]] if assistant A is better, [[B]] if assistant B is "
    "better, and [[C]] for a tie."
)
PAPER_PAIRWISE_USER_TEMPLATE = (
    "[Conversation]\n{prompt}\n\n"
    "[The Start of Assistant A's Answer]\n{answer_a}\n[The End of Assistant A's Answer]\n\n"
    "[The Start of Assistant B's Answer]\n{answer_b}\n[The End of Assistant B's Answer]"
)

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_CHATML_TURN = re.compile(r"<\|im_start\|>(\w+)\n(.*?)\n?<\|im_end\|>", re.DOTALL)


@dataclass(frozen=True)
class JudgePrompt:
    """A judge prompt: a system message and a user-message template."""

    name: str
    system_prompt: str
    prompt_template: str
    source: str  # the file it came from, for error messages


@dataclass(frozen=True)
class ArenaHardPrompt:
    """Arena-Hard v0.1 judge prompt plus its legacy continuation message (SCORING_SPECS §3)."""

    prompt: JudgePrompt
    continue_message: str
    max_attempts: int


def fill_template(template: str, values: Mapping[str, str], source: str) -> str:
    """Replace ``{name}`` placeholders; every placeholder needs a value and vice versa.

    Substitution is a single pass, so braces inside the values are left alone; braces in
    the template that are not ``{identifier}`` (JSON in the AlpacaEval prompt) stay too.
    """
    wanted = set(_PLACEHOLDER.findall(template))
    missing, unused = sorted(wanted - set(values)), sorted(set(values) - wanted)
    if missing or unused:
        raise ValueError(
            f"prompt {source}: placeholders without a value {missing}, values without a "
            f"placeholder {unused} (the template has {sorted(wanted)}); pass exactly those "
            "values, or check that the prompt file is the one SOURCES.md names.")
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def _read_file(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(
            f"judge prompt file {path} does not exist; point the data directory at the "
            "benchmark folder that holds judge_prompts/ and mt_bench/ (see SOURCES.md).")
    return path.read_text(encoding="utf-8")


def load_fastchat_prompts(data_dir: Path) -> dict[str, JudgePrompt]:
    """The eight FastChat judge prompts by name (pair-v2 ... single-math-v1-multi-turn)."""
    path = Path(data_dir) / FASTCHAT_PROMPTS_FILE
    prompts = {}
    for line_number, line in enumerate(_read_file(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{line_number} is not valid JSON ({error}); restore the "
                             "file as SOURCES.md names it.") from error
        fields = _required(record, ("name", "system_prompt", "prompt_template"),
                           f"{path}:{line_number}")
        prompts[fields[0]] = JudgePrompt(*fields, source=f"{path} ({fields[0]})")
    missing = sorted(set(_MT_BENCH_PROMPT_NAMES.values()) - set(prompts))
    if missing:
        raise ValueError(f"{path} lacks the MT-Bench prompts {missing} (found "
                         f"{sorted(prompts)}); use FastChat's judge_prompts.jsonl.")
    logger.debug("loaded %d FastChat judge prompts from %s", len(prompts), path)
    return prompts


def _required(record: Mapping[str, Any], keys: Sequence[str], where: str) -> list[Any]:
    missing = [key for key in keys if key not in record]
    if missing:
        raise ValueError(f"{where}: missing keys {missing} (found {sorted(record)}); the "
                         "prompt file must carry all of them.")
    return [record[key] for key in keys]


def load_arena_hard_prompt(data_dir: Path) -> ArenaHardPrompt:
    """The Arena-Hard v0.1 judge prompt (placeholders QUESTION, ANSWER_A, ANSWER_B)."""
    path = Path(data_dir) / ARENA_HARD_PROMPT_FILE
    record = json.loads(_read_file(path))
    system, template, message, attempts = _required(
        record, ("system_prompt", "prompt_template", "continue_message_legacy",
                 "number_of_judgment_attempts_legacy"), str(path))
    prompt = JudgePrompt(record.get("name", "arena-hard"), system, template, str(path))
    return ArenaHardPrompt(prompt, continue_message=message, max_attempts=int(attempts))


def load_alpaca_eval_prompt(data_dir: Path) -> JudgePrompt:
    """The AlpacaEval 2.0 judge prompt, a ChatML system + user pair in the file."""
    path = Path(data_dir) / ALPACA_EVAL_PROMPT_FILE
    turns = dict((role, text) for role, text in _CHATML_TURN.findall(_read_file(path)))
    if set(turns) != {"system", "user"}:
        raise ValueError(f"{path}: expected one ChatML system and one user turn, found "
                         f"roles {sorted(turns)}; use alpaca_eval_clf.txt unchanged.")
    return JudgePrompt("alpaca_eval_clf_gpt4_turbo", turns["system"], turns["user"], str(path))


def load_mt_bench_references(data_dir: Path, judge_model: str) -> dict[int, list[str]]:
    """Reference answer turns by question id, from ``reference_answer/<judge_model>.jsonl``.

    SCORING_SPECS §1: the judge's own name picks the file (``gpt-4`` -> ``gpt-4.jsonl``).
    """
    path = Path(data_dir) / MT_BENCH_REFERENCE_DIR / f"{judge_model}.jsonl"
    references = {}
    for line in _read_file(path).splitlines():
        if line.strip():
            record = json.loads(line)
            references[int(record["question_id"])] = list(record["choices"][0]["turns"])
    return references


def _messages(prompt: JudgePrompt, values: Mapping[str, str]) -> list[Message]:
    return [{"role": "system", "content": prompt.system_prompt},
            {"role": "user", "content": fill_template(prompt.prompt_template, values,
                                                      prompt.source)}]


def mt_bench_single_messages(prompts: Mapping[str, JudgePrompt], question: Mapping[str, Any],
                             answer_turns: Sequence[str], turn: int,
                             reference_turns: Sequence[str] | None = None) -> list[Message]:
    """Judge messages for one MT-Bench (question, turn), SCORING_SPECS §1.

    Args:
        prompts: from ``load_fastchat_prompts``.
        question: a ``question.jsonl`` record (``category``, ``turns``).
        answer_turns: the model's two answers.
        turn: 1 or 2; turn 2 shows the whole conversation.
        reference_turns: both reference turns; required for math, reasoning and coding.
    """
    if turn not in (1, 2):
        raise ValueError(f"turn must be 1 or 2, got {turn!r}.")
    needs_reference = question["category"] in MT_BENCH_REFERENCE_CATEGORIES
    if needs_reference and (reference_turns is None or len(reference_turns) < turn):
        raise ValueError(
            f"question {question.get('question_id')} ({question['category']}) is judged "
            f"against a reference, but got reference turns {reference_turns!r}; pass both "
            "turns from load_mt_bench_references(data_dir, judge_model).")
    questions = question["turns"]
    if turn == 1:
        values = {"question": questions[0], "answer": answer_turns[0]}
    else:
        values = {"question_1": questions[0], "question_2": questions[1],
                  "answer_1": answer_turns[0], "answer_2": answer_turns[1]}
    if needs_reference:
        values.update({f"ref_answer_{k + 1}": reference_turns[k] for k in range(turn)})
    return _messages(prompts[_MT_BENCH_PROMPT_NAMES[needs_reference, turn]], values)


def paper_pairwise_messages(prompt: str, answer_a: str, answer_b: str) -> list[Message]:
    """The BCO paper's pairwise judge prompt (figure 5) for one game."""
    paper = JudgePrompt("bco-paper-figure-5", PAPER_PAIRWISE_SYSTEM_PROMPT,
                        PAPER_PAIRWISE_USER_TEMPLATE, "PAPER_PAIRWISE_USER_TEMPLATE")
    return _messages(paper, {"prompt": prompt, "answer_a": answer_a, "answer_b": answer_b})


def arena_hard_messages(prompt: ArenaHardPrompt, question: str, answer_a: str,
                        answer_b: str) -> list[Message]:
    """One Arena-Hard game; game 1 puts the baseline in A, game 2 the model (§3)."""
    return _messages(prompt.prompt,
                     {"QUESTION": question, "ANSWER_A": answer_a, "ANSWER_B": answer_b})


def arena_hard_continuation(prompt: ArenaHardPrompt, messages: Sequence[Message],
                            reply: str) -> list[Message]:
    """v0.1: the conversation so far, the reply without a label, and the request to finish."""
    return [*messages, {"role": "assistant", "content": reply},
            {"role": "user", "content": prompt.continue_message}]


def alpaca_eval_messages(prompt: JudgePrompt, instruction: str, output_1: str, output_2: str,
                         *, is_switched: bool) -> list[Message]:
    """AlpacaEval messages; when switched, output_2 is shown as "m" and output_1 as "M"."""
    shown_m, shown_big_m = (output_2, output_1) if is_switched else (output_1, output_2)
    return _messages(prompt, {"instruction": instruction, "output_1": shown_m,
                              "output_2": shown_big_m})
