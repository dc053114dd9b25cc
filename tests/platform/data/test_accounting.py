"""Every input row is accounted for: good, bad by reason, or dropped by a policy."""

from __future__ import annotations

import json
import sys

import cloudpickle
import pytest

from objectives.base import DataShape
from platform.config import DataConfig
from platform.data.pipeline import build_stream, read_rows, summarize
from platform.data.summary import DROPPED_LONG, QUARANTINE_LIMIT

cloudpickle.register_pickle_by_value(sys.modules[__name__])

LONG = "word " * 60  # far over the limits below in the tiny tokenizer
LIMITS = {"max_length": 64, "max_prompt_length": 40, "max_completion_length": 16}


def _write(path, records: list) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n"
                            for r in records))
    return str(path)


def _length_rows(tmp_path) -> str:
    return _write(tmp_path / "lengths.jsonl", [
        {"prompt": "q0", "completion": "a0", "label": True},
        {"prompt": "q1", "completion": "a1", "label": True},
        {"prompt": "q2", "completion": "a2", "label": False},
        {"prompt": LONG, "completion": "a3", "label": False},  # prompt over
        {"prompt": LONG + "again", "completion": "a4", "label": True},  # prompt over
        {"prompt": "q5", "completion": LONG, "label": False},  # completion over
        {"prompt": "q6", "chosen": "fine", "rejected": LONG},  # a pair, completion over
    ])


def test_truncation_cuts_and_counts_rows_over_the_limits(ray_cluster, tmp_path,
                                                         tiny_model_path):
    data = DataConfig(train=[_length_rows(tmp_path)], balance="none", **LIMITS)
    stream, summary = build_stream(data, DataShape.BINARY, tiny_model_path, seed=0,
                                   objective="bco")
    assert (summary.long_prompts, summary.long_completions) == (2, 2)
    assert summary.dropped_rows == 0 and summary.train_rows == 8  # 6 rows + 2 of the pair
    rows = stream.take_all()
    assert len(rows) == 8
    assert all(len(row["input_ids"]) <= 64 and row["prompt_length"] <= 40 for row in rows)


def test_drop_removes_rows_over_the_limits_and_counts_them(ray_cluster, tmp_path,
                                                           tiny_model_path):
    data = DataConfig(train=[_length_rows(tmp_path)], balance="none", truncation="drop",
                      **LIMITS)
    stream, summary = build_stream(data, DataShape.BINARY, tiny_model_path, seed=0,
                                   objective="bco")
    # Two long prompts, one long completion and the pair with a long rejected reply (both
    # of its rows go: a pair is kept or dropped whole).
    assert summary.dropped == {DROPPED_LONG: 4}
    assert (summary.binary_up, summary.binary_down, summary.pairs) == (2, 1, 0)
    assert summary.input_rows == 7 == summary.good_rows + summary.bad_rows + summary.dropped_rows
    assert stream.count() == summary.train_rows == 3


def test_skip_mode_counts_bad_rows_of_every_format_by_reason(ray_cluster, tmp_path):
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    path = _write(tmp_path / "mixed.jsonl", [
        {"prompt": "p", "completion": "c", "label": True},  # 1 good
        {"prompt": "p", "completion": "c", "label": "true"},  # 2 a string is no boolean
        {"prompt": "p", "completion": "c", "label": 1},  # 3 nor is a number
        '{"prompt": "p", "response": "r", "helpfulness": NaN}',  # 4 NaN score
        {"messages": "hi there", "label": False},  # 5 messages not a list
        {"messages": turns[:1], "label": False},  # 6 ends with a user turn
        {"messages": turns, "label": False},  # 7 good
        {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: x\n\nAssistant: y"},
        "{broken",  # 9
        {"prompt": "p", "response": "r", "helpfulness": 3},  # 10 good
    ])
    summary = summarize(read_rows(DataConfig(train=[path], on_bad_row="skip")))
    assert summary.problems == {
        "field 'label' is not a boolean": 2,
        "field 'helpfulness' is not a finite number": 1,
        "field 'messages' is not a list of turns": 1,
        "field 'messages' does not end with an assistant turn": 1,
        "chosen and rejected differ before the final reply": 1,
        "not valid JSON": 1,
    }
    assert sorted(row["line"] for row in summary.quarantine) == [2, 3, 4, 5, 6, 8, 9]
    assert (summary.binary_up, summary.binary_down, summary.scored) == (1, 1, 1)
    assert summary.input_rows == 10 == summary.good_rows + summary.bad_rows


def test_the_quarantine_keeps_the_first_hundred_and_counts_them_all(ray_cluster, tmp_path):
    path = _write(tmp_path / "bad.jsonl", ["{broken"] * 150 + [
        {"prompt": "p", "completion": "c", "label": False}])
    summary = summarize(read_rows(DataConfig(train=[path], on_bad_row="skip")))
    assert summary.bad_rows == 150 and len(summary.quarantine) == QUARANTINE_LIMIT
    assert summary.input_rows == 151


def test_strict_mode_names_file_line_and_reason_of_a_new_check(ray_cluster, tmp_path):
    path = _write(tmp_path / "bad.jsonl", [
        {"prompt": "p", "completion": "c", "label": True},
        {"messages": [{"role": "user", "content": "q"}], "label": True}])
    with pytest.raises(Exception, match=r"bad\.jsonl:2: field 'messages' does not end"):
        summarize(read_rows(DataConfig(train=[path])))
