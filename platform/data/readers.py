"""Ray Data sources for CSV and columnar files that keep each row's file and row number.

CSV is read here rather than with ``ray.data.read_csv``: Arrow's reader infers one type per
column and block, so a single bad cell (``label`` = ``yes``) turns a whole column into
strings and every row of the block bad, and its rows carry no line numbers (a quoted cell
may span lines, so a row index is not a line either). Python's ``csv`` module gives each
record's first physical line; the cells are typed per row by :func:`coerce_csv_record`.

Parquet files and the Arrow files of a saved Hugging Face dataset (``*.arrow``, Arrow IPC
streams) become rows with their 1-based row number in :data:`LINE_COLUMN`. A Parquet file
is read whole by one read task (its footer needs random access).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from ray.data.datasource import FileBasedDatasource

from platform.data.formats import RowRules
from platform.data.jsonl import LINE_COLUMN, SOURCE_COLUMN, TEXT_COLUMN

PROBLEM_COLUMN = "problem"
# Reserved names of the location columns of columnar rows (a data set may have a "source").
RECORD_SOURCE = "__source__"
RECORD_LINE = "__line__"
_ROWS_PER_BLOCK = 8192
_TURN_FIELDS = ("messages", "prompt", "completion", "response", "chosen", "rejected")


class CsvRowsDatasource(FileBasedDatasource):
    """Rows ``{source, line, text, problem}``: ``text`` is the JSON of a record's cells by
    header name; ``problem`` names a record whose cell count does not match the header."""

    _FILE_EXTENSIONS = ["csv", "csv.gz"]

    def _read_stream(self, f: pa.NativeFile, path: str) -> Iterator[pa.Table]:
        text = f.readall().decode("utf-8", errors="replace").removeprefix("\ufeff")
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, None)
        if header is None:
            return
        columns: dict[str, list] = {SOURCE_COLUMN: [], LINE_COLUMN: [], TEXT_COLUMN: [],
                                    PROBLEM_COLUMN: []}
        first_line = reader.line_num + 1
        for cells in reader:
            line, first_line = first_line, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue
            problem = "" if len(cells) == len(header) else (
                f"wrong number of CSV cells: the header names {len(header)} columns, "
                f"this record has {len(cells)}")
            columns[SOURCE_COLUMN].append(path)
            columns[LINE_COLUMN].append(line)
            record = "" if problem else json.dumps(dict(zip(header, cells, strict=True)))
            columns[TEXT_COLUMN].append(record)
            columns[PROBLEM_COLUMN].append(problem)
            if len(columns[LINE_COLUMN]) >= _ROWS_PER_BLOCK:
                yield _csv_table(columns)
                columns = {name: [] for name in columns}
        if columns[LINE_COLUMN]:
            yield _csv_table(columns)


def _csv_table(columns: dict[str, list]) -> pa.Table:
    return pa.table({
        SOURCE_COLUMN: pa.array(columns[SOURCE_COLUMN], pa.string()),
        LINE_COLUMN: pa.array(columns[LINE_COLUMN], pa.int64()),
        TEXT_COLUMN: pa.array(columns[TEXT_COLUMN], pa.string()),
        PROBLEM_COLUMN: pa.array(columns[PROBLEM_COLUMN], pa.string()),
    })


def coerce_csv_record(cells: dict[str, str], rules: RowRules) -> dict[str, Any]:
    """Types of CSV cells: ``label`` true/false (any case) to a boolean, the score to a
    number, a list-of-turns cell (JSON text starting with ``[``) to a list, an empty cell
    to a missing value. Anything else stays text, so the row checks report it as it was."""
    record: dict[str, Any] = {}
    for name, cell in cells.items():
        value: Any = cell if cell.strip() else None
        if value is not None and name == "label" and cell.strip().lower() in ("true", "false"):
            value = cell.strip().lower() == "true"
        elif value is not None and name == rules.score_field:
            value = _number(cell)
        elif value is not None and name in _TURN_FIELDS and cell.lstrip().startswith("["):
            value = _turn_list(cell)
        record[name] = value
    return record


def _number(cell: str) -> float | str:
    try:
        return float(cell)
    except ValueError:
        return cell


def _turn_list(cell: str) -> Any:
    try:
        parsed = json.loads(cell)
    except json.JSONDecodeError:
        return cell
    return parsed if isinstance(parsed, list) else cell


class RecordFilesDatasource(FileBasedDatasource):
    """The rows of Parquet and Arrow IPC files with their file and 1-based row number."""

    _FILE_EXTENSIONS = ["parquet", "arrow"]

    def _read_stream(self, f: pa.NativeFile, path: str) -> Iterator[pa.Table]:
        number = 1
        for batch in _record_batches(f, path):
            if batch.num_rows == 0:
                continue
            table = pa.Table.from_batches([batch])
            table = table.append_column(RECORD_SOURCE, pa.array([path] * table.num_rows,
                                                                pa.string()))
            table = table.append_column(
                RECORD_LINE, pa.array(range(number, number + table.num_rows), pa.int64()))
            number += table.num_rows
            yield table


def _record_batches(f: pa.NativeFile, path: str) -> Iterator[pa.RecordBatch]:
    data = f.readall()
    if path.endswith(".parquet"):
        yield from pq.ParquetFile(pa.BufferReader(data)).iter_batches(_ROWS_PER_BLOCK)
        return
    try:  # Hugging Face writes Arrow IPC streams; the IPC file format is read as well
        yield from pa.ipc.open_stream(pa.BufferReader(data))
    except pa.ArrowInvalid:
        reader = pa.ipc.open_file(pa.BufferReader(data))
        for index in range(reader.num_record_batches):
            yield reader.get_batch(index)
