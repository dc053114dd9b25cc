"""Row checks: every defect is named, with its file and line."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pytest

from objectives.base import DataShape
from platform.data import formats, rows
from platform.data.tokenize import prepared_schema
from platform.data.usable import shape_rows

AUTO = formats.RowRules()
SKIP = rows.ReadOptions(strict=False)


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ({"prompt": "p", "completion": "c"}, "missing fields"),
        ({"prompt": "p", "completion": "c", "label": 1}, "must be true (thumbs-up) or false"),
        ({"prompt": "p", "completion": "c", "label": "true"}, "got 'true' (str)"),
        ({"prompt": "p", "completion": "c", "label": "yes"}, "got 'yes' (str)"),
        ({"prompt": "p", "completion": "  ", "label": True}, "field 'completion' is empty"),
        ({"prompt": 3, "completion": "c", "label": True}, "field 'prompt' must be a string"),
        ({"prompt": "p", "completion": None, "label": True}, "'completion' is missing or null"),
        ({"prompt": "p", "chosen": "a", "rejected": ""}, "field 'rejected' is empty"),
        (["not", "an", "object"], "must be a JSON object"),
        ({"prompt": "p", "response": "r", "helpfulness": float("nan")}, "not a finite number"),
        ({"prompt": "p", "response": "r", "helpfulness": "4"}, "is not a number: got '4'"),
        ({"messages": "hi", "label": True}, "'messages' is not a list of turns"),
        ({"messages": [{"role": "user", "content": "q"}], "label": True},
         "does not end with an assistant turn"),
        ({"messages": [{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}],
          "label": True}, "malformed turn"),
    ],
)
def test_bad_records_name_their_defect(record, problem):
    found, fields = formats.check_record(record, AUTO)
    assert problem in found
    assert fields == {}


def test_format_is_detected_from_the_columns():
    assert formats.check_record({"prompt": "p", "completion": "c", "label": False}, AUTO)[1][
        "kind"] == rows.BINARY
    assert formats.check_record({"prompt": "p", "chosen": "a", "rejected": "b"}, AUTO)[1][
        "kind"] == rows.PAIRED
    assert formats.check_record({"prompt": "p", "response": "r", "helpfulness": 3}, AUTO)[1][
        "kind"] == rows.SCORED
    problem, _ = formats.check_record({"prompt": "p", "chosen": "a", "rejected": "b"},
                                      formats.RowRules(expected="binary"))
    assert problem.startswith("missing fields")


def _jsonl_batch(lines: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"source": ["/data/f.jsonl"] * len(lines),
                         "line": list(range(1, len(lines) + 1)), "text": lines})


def test_strict_mode_fails_on_the_first_bad_row_with_file_and_line():
    good = json.dumps({"prompt": "p", "completion": "c", "label": True})
    with pytest.raises(rows.BadRowError) as info:
        rows.normalize_jsonl_batch(_jsonl_batch([good, "{not json"]), rows.ReadOptions())
    message = str(info.value)
    assert message.startswith("/data/f.jsonl:2: not valid JSON")
    assert "data.on_bad_row=skip" in message


def test_skip_mode_keeps_bad_rows_marked_for_counting():
    good = json.dumps({"prompt": "p", "completion": "c", "label": True})
    bad = json.dumps({"prompt": "p", "completion": "c", "label": "no"})
    out = rows.normalize_jsonl_batch(_jsonl_batch([good, bad]), SKIP).to_pandas()
    assert list(out["problem"] == "") == [True, False]
    assert out.loc[1, "line"] == 2 and "label" in out.loc[1, "problem"]


def test_pairs_become_one_thumbs_up_and_one_thumbs_down_row():
    base = {"source": "s", "line": 1, "prompt": "q", "chat": False, "completion": "",
            "label": False, "chosen": "", "rejected": "", "score": None, "problem": "",
            "split": rows.TRAIN, "prompt_hash": 0, "prompt_ids": [1], "completion_ids": [],
            "chosen_ids": [], "rejected_ids": [], "prompt_truncated": False,
            "completion_truncated": False}
    table = pa.Table.from_pylist([
        base | {"kind": rows.PAIRED, "chosen": "good", "rejected": "bad", "chosen_ids": [7],
                "rejected_ids": [8]},
        base | {"kind": rows.BINARY, "completion": "x", "label": True, "completion_ids": [9]},
    ], schema=prepared_schema())
    out = shape_rows(table, DataShape.BINARY).to_pylist()
    assert sorted((r["completion"], r["completion_ids"], r["label"]) for r in out) == [
        ("bad", [8], False), ("good", [7], True), ("x", [9], True)]
    assert {r["kind"] for r in out} == {rows.BINARY}
    assert shape_rows(table, DataShape.PAIRED).num_rows == 1
