"""Built-in feedback data whose thumbs-up / thumbs-down a program can verify.

The default data set of the platform, so that a run needs no download and its result can be
checked: ``builtin:arithmetic`` asks short questions about integer arithmetic; a simulated
answerer replies, right about 40 % of the time and otherwise with a typical slip (off by
one, digits swapped, the wrong operation). The label is not assigned with the reply: a
checker parses the question and the number in the reply and compares them, the way a
verifiable reward would. A policy aligned on this feedback should answer test questions
correctly more often, which :func:`check_answer` measures.

Rows follow the TRL unpaired format ``{"prompt": str, "completion": str, "label": bool}``
and are written once per split to ``cache_root()/data/<name>/<split>.jsonl``.

``builtin:arithmetic-pairs`` holds the same questions as preference pairs (a verified right
answer and a slip), for paired objectives and for comparing every objective on one data set.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from platform.models.builtin import BUILTIN_PREFIX, build_once, cache_root

logger = logging.getLogger(__name__)

Row = dict[str, str | bool]
_GENERATOR_VERSION = 1  # bump when a generator's output changes: the cache path includes it


@dataclass(frozen=True)
class BuiltinDataset:
    """A generated data set: its splits, their sizes and the function that makes the rows."""

    description: str
    split_sizes: Mapping[str, int]
    generate: Callable[[str], list[Row]]  # split name -> rows, the same on every call


# ---------------------------------------------------------------- builtin:arithmetic

_ARITHMETIC_SIZES = {"test": 200, "train": 2000}  # test first: it takes the pools' heads
_CORRECT_SHARE = 0.4  # the answerer's accuracy; the class imbalance BCO has to handle

# Operand ranges per operation. Subtraction keeps a >= b, so no answer is negative;
# multiplication stays small enough to do in one's head (and has 841 problems, enough
# for both splits).
_OPERAND_RANGES = {"+": (0, 99), "-": (0, 99), "*": (2, 30)}

# The question phrasings; the checker parses every one of them back.
_PROMPT_STYLES = (
    "What is {a} {symbol} {b}?",
    "Compute {a} {symbol} {b}.",
    "How much is {a} {word} {b}?",
    "Please {instruction}.",
    "Quick question: what do you get for {a} {symbol} {b}?",
)
_WORDS = {"+": "plus", "-": "minus", "*": "times"}
_INSTRUCTIONS = {"+": "add {a} and {b}", "-": "subtract {b} from {a}", "*": "multiply {a} by {b}"}
_ANSWER_STYLES = (
    "The answer is {value}.",
    "{a} {symbol} {b} = {value}.",
    "{value}",
    "It's {value}.",
    "Let me work it out: {a} {symbol} {b} makes {value}.",
)

_NUMBER = r"(\d+)"
_QUESTION_PATTERNS = (  # (pattern, function of the two numbers in reading order)
    (re.compile(rf"{_NUMBER} (?:\+|plus) {_NUMBER}"), lambda a, b: a + b),
    (re.compile(rf"{_NUMBER} (?:-|minus) {_NUMBER}"), lambda a, b: a - b),
    (re.compile(rf"{_NUMBER} (?:\*|times) {_NUMBER}"), lambda a, b: a * b),
    (re.compile(rf"add {_NUMBER} and {_NUMBER}"), lambda a, b: a + b),
    (re.compile(rf"subtract {_NUMBER} from {_NUMBER}"), lambda b, a: a - b),
    (re.compile(rf"multiply {_NUMBER} by {_NUMBER}"), lambda a, b: a * b),
)
_ANSWER_NUMBER = re.compile(r"-?\d+")


@dataclass(frozen=True)
class _Problem:
    a: int
    symbol: str
    b: int

    def apply(self, symbol: str) -> int:
        """The result of ``a <symbol> b``; a symbol other than the problem's is a slip."""
        return {"+": self.a + self.b, "-": self.a - self.b, "*": self.a * self.b}[symbol]


def solve(prompt: str) -> int:
    """The correct answer to an arithmetic question in one of the built-in phrasings.

    Raises:
        ValueError: the prompt is not one of the phrasings of ``builtin:arithmetic``.
    """
    for pattern, operation in _QUESTION_PATTERNS:
        match = pattern.search(prompt)
        if match:
            return operation(int(match.group(1)), int(match.group(2)))
    raise ValueError(
        f"not an arithmetic question of builtin:arithmetic: {prompt!r}. Accepted forms: "
        f"{', '.join(repr(style) for style in _PROMPT_STYLES)}, with the operations "
        "+ - * (or plus, minus, times). Pass a prompt of that data set."
    )


def check_answer(prompt: str, completion: str) -> bool:
    """Whether the last integer in ``completion`` answers the question ``prompt``.

    A completion without any integer is wrong.
    """
    numbers = _ANSWER_NUMBER.findall(completion)
    return bool(numbers) and int(numbers[-1]) == solve(prompt)


def _operation_pool(symbol: str) -> list[_Problem]:
    """Every problem of one operation, in a fixed shuffled order."""
    low, high = _OPERAND_RANGES[symbol]
    problems = [
        _Problem(a, symbol, b)
        for a in range(low, high + 1)
        for b in range(low, high + 1)
        if symbol != "-" or a >= b
    ]
    random.Random(f"arithmetic/pool/{symbol}").shuffle(problems)
    return problems


def _split_problems(split: str) -> list[_Problem]:
    """The problems of one split; splits take consecutive slices, so they never overlap."""
    pools = {symbol: _operation_pool(symbol) for symbol in _OPERAND_RANGES}
    offsets = dict.fromkeys(pools, 0)
    for name, size in _ARITHMETIC_SIZES.items():
        # The operations share the split evenly; the first ones take the remainder.
        counts = {s: size // 3 + (i < size % 3) for i, s in enumerate(pools)}
        if name == split:
            return [p for s, n in counts.items() for p in pools[s][offsets[s] : offsets[s] + n]]
        offsets = {s: offsets[s] + counts[s] for s in pools}
    raise ValueError(f"unknown split {split!r}; known: {list(_ARITHMETIC_SIZES)}")


def _simulated_answer(problem: _Problem, rng: random.Random) -> int:
    """A reply's number: right with probability ``_CORRECT_SHARE``, else a typical slip."""
    correct = problem.apply(problem.symbol)
    if rng.random() < _CORRECT_SHARE:
        return correct

    slip = rng.choice(("off_by_one", "swapped_digits", "wrong_operation"))
    swapped = int(str(correct)[::-1])
    if slip == "swapped_digits" and swapped != correct:
        return swapped
    if slip == "wrong_operation":
        # It may coincide with the right answer (2 + 2, 2 * 2); the checker then says so.
        return problem.apply(rng.choice([s for s in _OPERAND_RANGES if s != problem.symbol]))
    return correct + rng.choice((-1, 1))


def _question(problem: _Problem, rng: random.Random) -> str:
    """The prompt for one problem, in a randomly chosen phrasing."""
    a, b, symbol = problem.a, problem.b, problem.symbol
    instruction = _INSTRUCTIONS[symbol].format(a=a, b=b)
    return rng.choice(_PROMPT_STYLES).format(
        a=a, b=b, symbol=symbol, word=_WORDS[symbol], instruction=instruction
    )


def _answer(problem: _Problem, value: int, rng: random.Random) -> str:
    """A reply stating ``value``, in a randomly chosen style."""
    return rng.choice(_ANSWER_STYLES).format(a=problem.a, b=problem.b, symbol=problem.symbol,
                                             value=value)


def _render(problem: _Problem, rng: random.Random) -> tuple[str, str]:
    """(prompt, completion) for one problem, in a randomly chosen phrasing and style."""
    prompt = _question(problem, rng)
    return prompt, _answer(problem, _simulated_answer(problem, rng), rng)


def _arithmetic_rows(split: str) -> list[Row]:
    problems = _split_problems(split)
    rng = random.Random(f"arithmetic/rows/{split}")
    rng.shuffle(problems)

    rows: list[Row] = []
    for problem in problems:
        prompt, completion = _render(problem, rng)
        # The label is computed from the text alone, as a verifier would.
        rows.append(
            {"prompt": prompt, "completion": completion, "label": check_answer(prompt, completion)}
        )
    return rows


def _wrong_answer(problem: _Problem, rng: random.Random) -> int:
    """A typical slip that the checker rejects."""
    correct = problem.apply(problem.symbol)
    for _ in range(8):
        value = _simulated_answer(problem, rng)
        if value != correct:
            return value
    return correct + 1


def _arithmetic_pair_rows(split: str) -> list[Row]:
    """The same problems as pairs: a verified right answer (chosen) and a slip (rejected)."""
    problems = _split_problems(split)
    rng = random.Random(f"arithmetic-pairs/rows/{split}")
    rng.shuffle(problems)

    rows: list[Row] = []
    for problem in problems:
        prompt = _question(problem, rng)
        answers = [problem.apply(problem.symbol), _wrong_answer(problem, rng)]
        chosen, rejected = (_answer(problem, value, rng) for value in answers)
        if not check_answer(prompt, chosen) or check_answer(prompt, rejected):
            continue  # a pair the verifier cannot order is not a preference
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return rows


# ---------------------------------------------------------------- registry and cache

BUILTIN_DATASETS: dict[str, BuiltinDataset] = {
    f"{BUILTIN_PREFIX}arithmetic": BuiltinDataset(
        description="integer arithmetic questions with verified thumbs-up/down answers",
        split_sizes=_ARITHMETIC_SIZES,
        generate=_arithmetic_rows,
    ),
    f"{BUILTIN_PREFIX}arithmetic-pairs": BuiltinDataset(
        description="the arithmetic questions as (chosen: verified right, rejected: wrong) pairs",
        split_sizes=_ARITHMETIC_SIZES,
        generate=_arithmetic_pair_rows,
    ),
}


def is_builtin_dataset(name: str) -> bool:
    """Whether ``name`` asks for a built-in data set (has the ``builtin:`` prefix).

    An unknown ``builtin:`` name counts too, so that it reaches
    :func:`materialize_builtin_dataset` and fails there with the list of known names
    instead of being read as a file path.
    """
    return isinstance(name, str) and name.startswith(BUILTIN_PREFIX)


def materialize_builtin_dataset(name: str, split: str = "train") -> Path:
    """Writes a built-in data set's split as JSON Lines on first use; returns the file.

    Args:
        name: a key of :data:`BUILTIN_DATASETS`, e.g. ``builtin:arithmetic``.
        split: one of the data set's splits (``train``, ``test``).

    Returns:
        ``cache_root()/data/<name without prefix>/<split>.jsonl``.

    Raises:
        ValueError: an unknown data set or split.
    """
    dataset = BUILTIN_DATASETS.get(name)
    if dataset is None:
        raise ValueError(
            f"unknown built-in data set {name!r}; known: {', '.join(sorted(BUILTIN_DATASETS))}."
            " Fix the name, or give the path of a JSONL/Parquet file or a dataset directory."
        )
    if split not in dataset.split_sizes:
        raise ValueError(
            f"data set {name} has no split {split!r}; it has {', '.join(dataset.split_sizes)}."
            " Pick one of those."
        )
    # The generator's version is part of the path: a changed generator writes a new file.
    folder = f"{name.removeprefix(BUILTIN_PREFIX)}-v{_GENERATOR_VERSION}"
    target = cache_root() / "data" / folder / f"{split}.jsonl"

    def write(path: Path) -> None:
        rows = dataset.generate(split)
        with path.open("w", encoding="utf-8", newline="\n") as stream:
            for row in rows:
                stream.write(json.dumps(row, ensure_ascii=False) + "\n")
        thumbs_up = sum(bool(row.get("label")) for row in rows)  # pairs have no label
        logger.info(
            "wrote %d rows of %s/%s (%d thumbs-up) to %s", len(rows), name, split, thumbs_up, target
        )

    return build_once(target, write)
