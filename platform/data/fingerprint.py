"""A fingerprint of the processed training data, computed without collecting rows.

Each normal row of the training split that the stream is built from (good, kept by the
length policy) gets a 128-bit content hash; the hashes are summed modulo 2**64 per half
inside each block and the block sums added on the driver. A sum does not depend on row or
block order and, unlike XOR, does not cancel duplicated rows. The SHA-256 of these sums,
the row count, the data config (less the file names: the content is hashed), the data
shape and the tokenizer's files is :attr:`DataSummary.fingerprint`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from platform.config import DataConfig

CONTENT_COLUMNS = ["kind", "prompt", "chat", "completion", "label", "chosen", "rejected",
                   "score"]
_MOD = 2**64
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                    "added_tokens.json", "vocab.json", "vocab.txt", "merges.txt",
                    "tokenizer.model", "chat_template.jinja", "chat_template.json")

Digest = tuple[int, int, int]  # (sum of high halves, sum of low halves, rows)


def content_digest(rows: pd.DataFrame) -> Digest:
    """The order-independent digest of some normal rows' content."""
    high = low = 0
    columns = [rows[name].tolist() for name in CONTENT_COLUMNS]
    for values in zip(*columns, strict=True):
        text = json.dumps(values, ensure_ascii=False, default=str)
        digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
        high += int.from_bytes(digest[:8], "big")
        low += int.from_bytes(digest[8:], "big")
    return high % _MOD, low % _MOD, len(rows)


def add_digests(first: Digest, second: Digest) -> Digest:
    return ((first[0] + second[0]) % _MOD, (first[1] + second[1]) % _MOD,
            first[2] + second[2])


def tokenizer_identity(path: str) -> str:
    """SHA-256 of a tokenizer directory's tokenizer files; the path itself otherwise."""
    folder = Path(path)
    if not folder.is_dir():
        return path
    digest = hashlib.sha256()
    for name in _TOKENIZER_FILES:
        if (folder / name).is_file():
            digest.update(name.encode() + b"\x00" + (folder / name).read_bytes())
    return digest.hexdigest()


def fingerprint(digest: Digest, config: DataConfig, shape: str, tokenizer_path: str) -> str:
    """The SHA-256 hex digest of rows, data config, data shape and tokenizer."""
    payload: dict[str, Any] = {
        "rows": list(digest),
        "data": config.model_dump(mode="json", exclude={"train"}),
        "shape": str(shape),
        "tokenizer": tokenizer_identity(tokenizer_path),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
