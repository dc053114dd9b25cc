"""Row checks and the normal form of a feedback row (SPEC section 3).

Every input row becomes one normal-form row with the columns of :data:`NORMAL_COLUMNS`:
``kind`` is ``binary`` (``prompt``, ``completion``, ``label``) or ``paired`` (``prompt``,
``chosen``, ``rejected``); the columns of the other kind are empty. ``problem`` is empty for
a good row and names the defect of a bad one, which keeps its ``source`` and ``line`` so
that an error or the quarantine table can point at it.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from platform.data.jsonl import LINE_COLUMN, SOURCE_COLUMN, TEXT_COLUMN

BINARY = "binary"
PAIRED = "paired"
NORMAL_COLUMNS = ["source", "line", "kind", "prompt", "completion", "label", "chosen",
                  "rejected", "problem"]

_BINARY_FIELDS = ("prompt", "completion", "label")
_PAIRED_FIELDS = ("prompt", "chosen", "rejected")


class BadRowError(ValueError):
    """A malformed input row under ``data.on_bad_row=strict``."""


def check_record(record: Any, expected: str) -> tuple[str, dict[str, Any]]:
    """(problem, normal fields) of one parsed record; ``problem`` is "" when it is good.

    ``expected`` is ``auto``, ``binary`` or ``paired``.
    """
    if not isinstance(record, dict):
        return f"a row must be a JSON object, got {type(record).__name__}", {}
    kind = _kind_of(record, expected)
    if kind is None:
        return (
            f"missing fields: a binary row needs {list(_BINARY_FIELDS)}, a paired row "
            f"{list(_PAIRED_FIELDS)}; this row has {sorted(record)}"
        ), {}

    fields = _BINARY_FIELDS if kind == BINARY else _PAIRED_FIELDS
    for name in fields:
        problem = _field_problem(name, record.get(name))
        if problem:
            return problem, {}
    return "", {"kind": kind, **{name: record[name] for name in fields}}


def _kind_of(record: dict[str, Any], expected: str) -> str | None:
    has_binary = all(name in record for name in _BINARY_FIELDS)
    has_paired = all(name in record for name in _PAIRED_FIELDS)
    if expected == BINARY:
        return BINARY if has_binary else None
    if expected == PAIRED:
        return PAIRED if has_paired else None
    return PAIRED if has_paired else BINARY if has_binary else None


def _field_problem(name: str, value: Any) -> str:
    if value is None:
        return f"field {name!r} is missing or null"
    if name == "label":
        if not isinstance(value, bool):
            return (
                f"field 'label' must be true (thumbs-up) or false (thumbs-down), got "
                f"{value!r} ({type(value).__name__})"
            )
        return ""
    if not isinstance(value, str):
        return f"field {name!r} must be a string, got {type(value).__name__}: {value!r:.60}"
    if not value.strip():
        return f"field {name!r} is empty"
    if "\ufffd" in value:
        return f"field {name!r} holds bytes that are not valid UTF-8"
    return ""


def normalize_jsonl_batch(batch: pd.DataFrame, expected: str, strict: bool) -> pd.DataFrame:
    """Parse and check a batch of ``{source, line, text}`` rows into the normal form."""
    rows = []
    for source, line, text in zip(
        batch[SOURCE_COLUMN], batch[LINE_COLUMN], batch[TEXT_COLUMN], strict=True
    ):
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            problem, fields = f"not valid JSON ({exc.msg} at column {exc.colno})", {}
        else:
            problem, fields = check_record(record, expected)
        rows.append(_normal_row(source, int(line), problem, fields, strict))
    return pd.DataFrame(rows, columns=NORMAL_COLUMNS)


def normalize_records_batch(batch: pd.DataFrame, expected: str, strict: bool) -> pd.DataFrame:
    """Check a batch of columnar rows (Parquet) into the normal form.

    ``path`` is the file (Ray's ``include_paths``); the row number is not known there, so
    ``line`` is 0 and errors name the file and the row's content instead.
    """
    rows = []
    for record in batch.to_dict(orient="records"):
        source = str(record.pop("path", "<parquet>"))
        record = {key: _plain(value) for key, value in record.items()}
        problem, fields = check_record(record, expected)
        if problem:
            problem = f"{problem} (row {json.dumps(record, default=str)[:200]})"
        rows.append(_normal_row(source, 0, problem, fields, strict))
    return pd.DataFrame(rows, columns=NORMAL_COLUMNS)


def _plain(value: Any) -> Any:
    """Arrow/pandas scalars to Python values; missing values to None."""
    if isinstance(value, float) and value != value:  # NaN from a missing cell
        return None
    return value.item() if hasattr(value, "item") else value


def _normal_row(
    source: str, line: int, problem: str, fields: dict[str, Any], strict: bool
) -> dict[str, Any]:
    if problem and strict:
        where = f"{source}:{line}" if line else source
        raise BadRowError(
            f"{where}: {problem}. Fix the row, or run with data.on_bad_row=skip to skip bad "
            "rows (each is counted and listed in the run's quarantine table)."
        )
    return {
        "source": source,
        "line": line,
        "kind": fields.get("kind", ""),
        "prompt": fields.get("prompt", ""),
        "completion": fields.get("completion", ""),
        "label": bool(fields.get("label", False)),
        "chosen": fields.get("chosen", ""),
        "rejected": fields.get("rejected", ""),
        "problem": problem,
    }


def paired_to_binary(batch: pd.DataFrame) -> pd.DataFrame:
    """Each paired row becomes a thumbs-up row (chosen) and a thumbs-down row (rejected);
    binary rows pass through."""
    binary = batch[batch["kind"] == BINARY]
    paired = batch[batch["kind"] == PAIRED]
    if paired.empty:
        return batch
    up = paired.assign(kind=BINARY, completion=paired["chosen"], label=True)
    down = paired.assign(kind=BINARY, completion=paired["rejected"], label=False)
    out = pd.concat([binary, up, down], ignore_index=True)
    return out.assign(chosen="", rejected="")
