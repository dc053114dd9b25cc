"""Sources: CSV with line numbers, saved Hugging Face datasets, URIs and hub names."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cloudpickle
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from platform.config import DataConfig
from platform.data.pipeline import read_rows, summarize
from platform.data.sources import resolve_inputs

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def test_uris_pass_through_untouched_and_local_paths_are_routed(tmp_path):
    (tmp_path / "d").mkdir()
    for name in ("a.jsonl.gz", "b.csv", "c.parquet", "notes.txt"):
        (tmp_path / "d" / name).write_text("")
    uris = ["s3://bucket/feedback/part-0.jsonl", "gs://bucket/x.parquet",
            "s3://bucket/y.csv.gz", "gs://bucket/hf/data-00000-of-00001.arrow"]
    files = resolve_inputs([*uris, str(tmp_path / "d")])
    local = tmp_path.resolve() / "d"
    assert files.jsonl == [uris[0], str(local / "a.jsonl.gz")]
    assert files.csv == [uris[2], str(local / "b.csv")]
    assert files.records == [uris[1], uris[3], str(local / "c.parquet")]

    listed = resolve_inputs([f"file://{local}"])  # a folder URI is listed, then routed
    assert listed.jsonl == [f"file://{local}/a.jsonl.gz"]
    assert listed.csv == [f"file://{local}/b.csv"]


def test_a_hub_name_offline_fails_saying_how_to_download(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match=r"hub is offline.*save_to_disk") as info:
        resolve_inputs(["nvidia/HelpSteer2"])
    assert "load_dataset('nvidia/HelpSteer2', split='train')" in str(info.value)
    with pytest.raises(ValueError, match="does not exist"):
        resolve_inputs(["data/missing.jsonl"])  # a missing file is not a hub name


def test_csv_rows_keep_their_first_line_and_typed_cells(ray_cluster, tmp_path):
    path = tmp_path / "feedback.csv"
    path.write_text(
        "prompt,completion,label\n"
        '"a question\nover two lines",an answer,true\n'  # lines 2-3
        "q2,a2,yes\n"  # line 4: not a boolean
        "\n"  # line 5: blank, skipped
        "q3,a3,FALSE\n"  # line 6
        "q4,a4\n"  # line 7: a cell short
    )
    # Given as a URI: Ray's reader opens it untouched, and the rows keep their lines.
    config = DataConfig(train=[f"file://{path}"], on_bad_row="skip")
    summary = summarize(read_rows(config))
    assert summary.input_rows == 4
    assert (summary.binary_up, summary.binary_down) == (1, 1)
    problems = {row["line"]: row["problem"] for row in summary.quarantine}
    assert sorted(problems) == [4, 7]
    assert "got 'yes' (str)" in problems[4]
    assert problems[7].startswith("wrong number of CSV cells")


def _write_saved_dataset(folder: Path, records: list[dict]) -> None:
    """The layout of ``datasets.Dataset.save_to_disk``: an Arrow stream and its state."""
    folder.mkdir()
    table = pa.Table.from_pylist(records)
    with pa.ipc.new_stream(folder / "data-00000-of-00001.arrow", table.schema) as writer:
        writer.write_table(table)
    (folder / "dataset_info.json").write_text(json.dumps({"features": {}}))
    (folder / "state.json").write_text(json.dumps(
        {"_data_files": [{"filename": "data-00000-of-00001.arrow"}], "_split": "train"}))


def test_saved_hugging_face_dataset_and_parquet_rows_have_row_numbers(ray_cluster, tmp_path):
    turns = [{"role": "user", "content": "2 + 2?"}, {"role": "assistant", "content": "4."}]
    _write_saved_dataset(tmp_path / "saved", [
        {"messages": turns, "label": True},
        {"messages": turns[:1], "label": False},  # row 2: no final assistant turn
        {"messages": turns, "label": False},
    ])
    pq.write_table(pa.Table.from_pylist([
        {"prompt": "p", "response": "r", "helpfulness": 4.0},
        {"prompt": "p", "response": "r", "helpfulness": float("nan")},  # row 2
        {"prompt": "p", "response": "s", "helpfulness": None},  # row 3
    ]), tmp_path / "scored.parquet")
    config = DataConfig(train=[str(tmp_path / "saved"), str(tmp_path / "scored.parquet")],
                        on_bad_row="skip")
    summary = summarize(read_rows(config))
    assert summary.input_rows == 6
    assert (summary.binary_up, summary.binary_down, summary.scored) == (1, 1, 1)
    where = sorted((Path(row["source"]).name, row["line"]) for row in summary.quarantine)
    assert where == [("data-00000-of-00001.arrow", 2), ("scored.parquet", 2),
                     ("scored.parquet", 3)]
    assert summary.problems == {
        "field 'messages' does not end with an assistant turn": 1,
        "field 'helpfulness' is not a finite number": 1,
        "field 'helpfulness' is missing or null": 1,
    }
