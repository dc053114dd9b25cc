"""The built-in arithmetic feedback: sizes, balance, verified labels, determinism, cache."""

import json
import re
from pathlib import Path

import pytest

from platform.data.synthetic import (
    BUILTIN_DATASETS,
    check_answer,
    is_builtin_dataset,
    materialize_builtin_dataset,
    solve,
)
from platform.models.builtin import CACHE_ENV_VAR

NAME = "builtin:arithmetic"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache holding both splits, written once for this module's tests."""
    cache = tmp_path_factory.mktemp("data-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV_VAR, str(cache))
        for split in BUILTIN_DATASETS[NAME].split_sizes:
            materialize_builtin_dataset(NAME, split)
    return cache


def read_rows(cache: Path, split: str) -> list[dict]:
    lines = (cache / "data" / "arithmetic-v1" / f"{split}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def read_problem(prompt: str) -> tuple[int, str, int]:
    """(a, operation, b) of a question, from its two numbers and its operation word."""
    first, second = (int(number) for number in re.findall(r"\d+", prompt))
    if "subtract" in prompt:  # "subtract 8 from 30" asks for 30 - 8
        return second, "-", first
    for operation, words in (
        ("+", ("add", " + ", " plus ")),
        ("-", (" - ", " minus ")),
        ("*", ("multiply", " * ", " times ")),
    ):
        if any(word in prompt for word in words):
            return first, operation, second
    raise AssertionError(f"no operation in {prompt!r}")


def expected_answer(prompt: str) -> int:
    a, operation, b = read_problem(prompt)
    return {"+": a + b, "-": a - b, "*": a * b}[operation]


def test_split_sizes_are_2000_and_200(cache: Path) -> None:
    assert len(read_rows(cache, "train")) == 2000
    assert len(read_rows(cache, "test")) == 200


def test_rows_are_trl_unpaired_with_exactly_three_typed_fields(cache: Path) -> None:
    for split in ("train", "test"):
        for row in read_rows(cache, split):
            assert list(row) == ["prompt", "completion", "label"]
            assert isinstance(row["prompt"], str) and row["prompt"]
            assert isinstance(row["completion"], str) and row["completion"]
            assert isinstance(row["label"], bool)


@pytest.mark.parametrize("split", ["train", "test"])
def test_about_forty_percent_are_thumbs_up(cache: Path, split: str) -> None:
    rows = read_rows(cache, split)
    share = sum(row["label"] for row in rows) / len(rows)
    assert 0.35 <= share <= 0.45, share


def test_labels_agree_with_the_arithmetic_done_here(cache: Path) -> None:
    for row in read_rows(cache, "train") + read_rows(cache, "test"):
        given = int(re.findall(r"-?\d+", row["completion"])[-1])  # the reply's final number
        assert row["label"] == (given == expected_answer(row["prompt"])), row


def test_checker_on_worked_examples() -> None:
    assert solve("What is 17 + 25?") == 42  # 17 + 25 = 42
    assert solve("Please subtract 8 from 30.") == 22  # 30 - 8 = 22
    assert solve("How much is 6 times 7?") == 42  # 6 * 7 = 42
    assert solve("Quick question: what do you get for 40 - 40?") == 0

    assert check_answer("What is 17 + 25?", "17 + 25 = 42.")  # the last number counts
    assert not check_answer("What is 17 + 25?", "17 + 25 = 43.")  # off by one
    assert not check_answer("Please multiply 6 by 7.", "It's 24.")  # digits of 42 swapped
    assert not check_answer("Please add 6 and 7.", "I do not know.")  # no number at all

    with pytest.raises(ValueError, match="not an arithmetic question"):
        solve("What is the capital of France?")


def test_every_phrasing_and_operation_occurs(cache: Path) -> None:
    prompts = [row["prompt"] for row in read_rows(cache, "train")]
    for marker in ("What is", "Compute", "How much is", "Please", "Quick question"):
        assert any(prompt.startswith(marker) for prompt in prompts), marker
    for operation in ("+", "-", "*", "plus", "minus", "times", "add", "subtract", "multiply"):
        assert any(f" {operation} " in prompt for prompt in prompts), operation


def test_prompts_are_disjoint_between_splits(cache: Path) -> None:
    train = {row["prompt"] for row in read_rows(cache, "train")}
    test = {row["prompt"] for row in read_rows(cache, "test")}
    assert len(train) == 2000 and len(test) == 200
    assert not train & test

    # Nor is one question asked in both splits under two phrasings.
    assert not {read_problem(p) for p in train} & {read_problem(p) for p in test}


def test_two_materialisations_are_byte_identical(
    cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path))
    for split in ("train", "test"):
        again = materialize_builtin_dataset(NAME, split)
        assert again == tmp_path / "data" / "arithmetic-v1" / f"{split}.jsonl"
        assert again.read_bytes() == (cache / "data" / "arithmetic-v1" / f"{split}.jsonl").read_bytes()


def test_second_materialisation_is_a_cache_hit(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV_VAR, str(cache))
    path = cache / "data" / "arithmetic-v1" / "train.jsonl"
    written = path.stat().st_mtime_ns

    assert materialize_builtin_dataset(NAME) == path
    assert path.stat().st_mtime_ns == written


def test_unknown_data_set_lists_the_known_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path))
    with pytest.raises(
        ValueError, match="unknown built-in data set 'builtin:poetry'; known: builtin:arithmetic"
    ):
        materialize_builtin_dataset("builtin:poetry")
    with pytest.raises(ValueError, match="has no split 'validation'; it has test, train"):
        materialize_builtin_dataset(NAME, "validation")
    assert not (tmp_path / "data").exists()


def test_is_builtin_dataset_tells_names_from_paths() -> None:
    assert is_builtin_dataset(NAME)
    assert is_builtin_dataset("builtin:poetry")  # unknown, so materialising it says why
    assert not is_builtin_dataset("data/feedback.jsonl")
    assert not is_builtin_dataset("arithmetic")
