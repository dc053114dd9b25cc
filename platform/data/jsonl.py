"""A Ray Data source for JSON Lines that keeps each row's file and line number.

``ray.data.read_json`` parses whole files with Arrow, so a bad row fails the read without
saying where it was. This source yields the raw text of each line with its location; the
row checks (``platform.data.rows``) parse it and can then name file, line and reason.
Compressed files (``.jsonl.gz``) are decompressed by Ray's file layer.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
from ray.data.datasource import FileBasedDatasource

SOURCE_COLUMN = "source"
LINE_COLUMN = "line"
TEXT_COLUMN = "text"

_ROWS_PER_BLOCK = 8192


class JsonLinesDatasource(FileBasedDatasource):
    """Rows ``{source, line, text}``: one per non-blank line, ``line`` counted from 1."""

    _FILE_EXTENSIONS = ["jsonl", "json", "jsonl.gz", "json.gz"]

    def _read_stream(self, f: pa.NativeFile, path: str) -> Iterator[pa.Table]:
        data = f.readall()
        sources: list[str] = []
        lines: list[int] = []
        texts: list[str] = []
        for number, raw in enumerate(data.splitlines(), start=1):
            if not raw.strip():
                continue
            sources.append(path)
            lines.append(number)
            # Undecodable bytes are kept visible (U+FFFD) and reported by the row checks.
            texts.append(raw.decode("utf-8", errors="replace"))
            if len(texts) >= _ROWS_PER_BLOCK:
                yield _table(sources, lines, texts)
                sources, lines, texts = [], [], []
        if texts:
            yield _table(sources, lines, texts)


def _table(sources: list[str], lines: list[int], texts: list[str]) -> pa.Table:
    return pa.table(
        {
            SOURCE_COLUMN: pa.array(sources, pa.string()),
            LINE_COLUMN: pa.array(lines, pa.int64()),
            TEXT_COLUMN: pa.array(texts, pa.string()),
        }
    )
