"""Held-out test split by prompt, and the fingerprint of the processed data."""

from __future__ import annotations

import json
import sys

import cloudpickle

from objectives.base import DataShape
from platform.config import DataConfig
from platform.data.pipeline import build_stream, read_split

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _records(prompts: int) -> list[dict]:
    """Two responses per prompt, one of each class."""
    return [{"prompt": f"question {i}", "completion": f"answer {i}{tag}", "label": label}
            for i in range(prompts) for tag, label in (("a", True), ("b", False))]


def _write(path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_the_test_split_holds_whole_prompts_and_no_prompt_is_in_both(ray_cluster, tmp_path,
                                                                      tiny_model_path):
    data = DataConfig(train=[_write(tmp_path / "f.jsonl", _records(40))], test_fraction=0.3,
                      balance="none")
    test = read_split(data, "test").take_all()
    train = read_split(data, "train").take_all()
    test_prompts = {row["prompt"] for row in test}
    train_prompts = {row["prompt"] for row in train}
    assert not test_prompts & train_prompts
    assert test_prompts | train_prompts == {f"question {i}" for i in range(40)}
    assert len(test) == 2 * len(test_prompts) and 0 < len(test_prompts) < 40

    _, summary = build_stream(data, DataShape.BINARY, tiny_model_path, seed=0,
                              objective="bco")
    assert summary.test_rows == len(test)
    assert summary.train_rows == len(train) == summary.binary_up + summary.binary_down
    assert summary.input_rows == summary.good_rows == 80


def test_the_fingerprint_follows_the_content_not_the_file(ray_cluster, tmp_path,
                                                          tiny_model_path):
    records = _records(6)

    def fingerprint(path: str, **options) -> str:
        data = DataConfig(train=[path], **options)
        return build_stream(data, DataShape.BINARY, tiny_model_path, seed=0,
                            objective="bco")[1].fingerprint

    first = fingerprint(_write(tmp_path / "a.jsonl", records))
    assert len(first) == 64
    # The same rows in another file and order: the same data.
    assert fingerprint(_write(tmp_path / "b.jsonl", records[::-1])) == first
    changed = [*records[:-1], {**records[-1], "completion": "another answer"}]
    assert fingerprint(_write(tmp_path / "c.jsonl", changed)) != first
    assert fingerprint(str(tmp_path / "a.jsonl"), max_completion_length=64) != first
