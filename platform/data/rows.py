"""The normal form of a feedback row (SPEC section 3), and the batch steps that build it.

Every input row becomes exactly one normal-form row with the columns of
:data:`NORMAL_SCHEMA`: ``kind`` is ``binary`` (``prompt``, ``completion``, ``label``),
``paired`` (``prompt``, ``chosen``, ``rejected``) or ``scored`` (``prompt``,
``completion``, ``score`` and the ``label`` its threshold gives); the columns of the other
kinds are empty. ``chat`` marks a prompt held as the JSON text of its turns
(``platform.data.formats``). ``problem`` is empty for a good row and names the defect of a
bad one, which keeps its ``source`` and ``line`` so that an error or the quarantine table
can point at it. ``split`` (``train`` or ``test``) and ``prompt_hash`` come from a seeded
hash of the prompt, so every row of one prompt lands in the same split.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from platform.data import formats
from platform.data.formats import BINARY, PAIRED, SCORED, RowRules  # noqa: F401 (re-export)
from platform.data.jsonl import LINE_COLUMN, SOURCE_COLUMN, TEXT_COLUMN
from platform.data.readers import (
    PROBLEM_COLUMN,
    RECORD_LINE,
    RECORD_SOURCE,
    coerce_csv_record,
)

if TYPE_CHECKING:  # the config pulls in torch; workers running these steps need not
    from platform.config import DataConfig

TRAIN = "train"
TEST = "test"
NORMAL_SCHEMA = pa.schema([
    ("source", pa.string()), ("line", pa.int64()), ("kind", pa.string()),
    ("prompt", pa.string()), ("chat", pa.bool_()), ("completion", pa.string()),
    ("label", pa.bool_()), ("chosen", pa.string()), ("rejected", pa.string()),
    ("score", pa.float64()), ("problem", pa.string()), ("split", pa.string()),
    ("prompt_hash", pa.int64()),
])
NORMAL_COLUMNS = NORMAL_SCHEMA.names
_HASH_SPAN = 2**64


class BadRowError(ValueError):
    """A malformed input row under ``data.on_bad_row=strict``."""


@dataclass(frozen=True)
class ReadOptions:
    """What the normalizing steps need from the data config."""

    rules: RowRules = RowRules()
    strict: bool = True
    test_fraction: float = 0.0
    split_seed: int = 0

    @classmethod
    def from_config(cls, config: DataConfig) -> ReadOptions:
        rules = RowRules(config.format, config.score_field, config.up_threshold)
        return cls(rules, config.on_bad_row == "strict", config.test_fraction,
                   config.split_seed)


def normalize_jsonl_batch(batch: pd.DataFrame, options: ReadOptions) -> pa.Table:
    """Parse and check a batch of ``{source, line, text}`` rows into the normal form."""
    rows = []
    for source, line, text in zip(
        batch[SOURCE_COLUMN], batch[LINE_COLUMN], batch[TEXT_COLUMN], strict=True
    ):
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            problem, fields = f"not valid JSON: {exc.msg} at column {exc.colno}", {}
        else:
            problem, fields = formats.check_record(record, options.rules)
        rows.append(_normal_row(source, int(line), problem, fields, options))
    return pa.Table.from_pylist(rows, schema=NORMAL_SCHEMA)


def normalize_csv_batch(batch: pd.DataFrame, options: ReadOptions) -> pa.Table:
    """Type and check a batch of ``{source, line, text, problem}`` CSV records."""
    rows = []
    for source, line, text, problem in zip(batch[SOURCE_COLUMN], batch[LINE_COLUMN],
                                           batch[TEXT_COLUMN], batch[PROBLEM_COLUMN],
                                           strict=True):
        fields: dict[str, Any] = {}
        if not problem:
            record = coerce_csv_record(json.loads(text), options.rules)
            problem, fields = formats.check_record(record, options.rules)
        rows.append(_normal_row(source, int(line), problem, fields, options))
    return pa.Table.from_pylist(rows, schema=NORMAL_SCHEMA)


def normalize_records_batch(batch: pa.Table, options: ReadOptions) -> pa.Table:
    """Check a batch of columnar rows (Parquet, Arrow) that carry their file and row."""
    rows = []
    for record in batch.to_pylist():  # Python values: null stays None, NaN stays NaN
        source = str(record.pop(RECORD_SOURCE, "<records>"))
        line = int(record.pop(RECORD_LINE, 0))
        problem, fields = formats.check_record(record, options.rules)
        rows.append(_normal_row(source, line, problem, fields, options))
    return pa.Table.from_pylist(rows, schema=NORMAL_SCHEMA)


def _normal_row(
    source: str, line: int, problem: str, fields: dict[str, Any], options: ReadOptions
) -> dict[str, Any]:
    if problem and options.strict:
        where = f"{source}:{line}" if line else source
        raise BadRowError(
            f"{where}: {problem}. Fix the row, or run with data.on_bad_row=skip to skip bad "
            "rows (each is counted and listed in the run's quarantine table)."
        )
    prompt, chat = fields.get("prompt", ""), bool(fields.get("chat", False))
    hashed = prompt_hash(prompt, chat, options.split_seed)
    return {
        "source": source, "line": line, "kind": fields.get("kind", ""),
        "prompt": prompt, "chat": chat, "completion": fields.get("completion", ""),
        "label": bool(fields.get("label", False)), "chosen": fields.get("chosen", ""),
        "rejected": fields.get("rejected", ""), "score": fields.get("score"),
        "problem": problem, "split": split_of(hashed, options.test_fraction),
        "prompt_hash": hashed,
    }


def prompt_hash(prompt: str, chat: bool, seed: int) -> int:
    """A seeded signed 64-bit hash of a prompt: its split and its group of responses."""
    key = f"{seed}\x00{int(chat)}\x00{prompt}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big", signed=True)


def split_of(hashed: int, test_fraction: float) -> str:
    """``test`` for the prompts whose hash falls in the first ``test_fraction`` of the range."""
    return TEST if (hashed % _HASH_SPAN) < test_fraction * _HASH_SPAN else TRAIN
