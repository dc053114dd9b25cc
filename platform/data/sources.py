"""Where the training rows come from: the entries of ``data.train`` routed to readers.

An entry is one of:

- a builtin dataset (``builtin:arithmetic``), written to the cache as JSON Lines first;
- a local file or directory: ``.jsonl``/``.json`` (optionally ``.gz``), ``.csv``
  (optionally ``.gz``), ``.parquet``; a directory is searched recursively;
- a saved Hugging Face dataset directory (``Dataset.save_to_disk``: ``state.json`` or
  ``dataset_info.json`` beside ``*.arrow`` files; a ``DatasetDict`` with
  ``dataset_dict.json`` is read from its ``train`` split). The ``datasets`` package is not
  needed: its Arrow files are Arrow IPC streams, read directly with pyarrow;
- an object-store URI (``s3://``, ``gs://``, ...): a file URI is routed by its extension
  and handed to Ray's readers untouched; a folder URI is listed with pyarrow's filesystem
  layer (as Ray's readers would) and its files routed the same way;
- a Hugging Face hub dataset name (``owner/name``, ``owner/name:split``), only when online
  and with the ``datasets`` package installed; offline it fails saying how to download.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import ray.data

from platform.config import DataConfig
from platform.data import rows, synthetic
from platform.data.jsonl import JsonLinesDatasource
from platform.data.readers import CsvRowsDatasource, RecordFilesDatasource

logger = logging.getLogger(__name__)

JSONL_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")
CSV_SUFFIXES = (".csv", ".csv.gz")
RECORD_SUFFIXES = (".parquet", ".arrow")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(:[\w.-]+)?$")
_HF_MARKERS = ("state.json", "dataset_info.json")
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


@dataclass
class InputFiles:
    """The files (paths or URIs) of ``data.train``, by the reader that reads them."""

    jsonl: list[str] = field(default_factory=list)
    csv: list[str] = field(default_factory=list)
    records: list[str] = field(default_factory=list)  # Parquet and Arrow

    def add(self, file: str) -> bool:
        """Route one file by its extension; False when the extension is unknown."""
        name = file.lower()
        for suffixes, files in ((JSONL_SUFFIXES, self.jsonl), (CSV_SUFFIXES, self.csv),
                                (RECORD_SUFFIXES, self.records)):
            if name.endswith(suffixes):
                files.append(file)
                return True
        return False

    def __bool__(self) -> bool:
        return bool(self.jsonl or self.csv or self.records)


def resolve_inputs(entries: list[str]) -> InputFiles:
    """The files named by ``data.train``, routed to their readers."""
    files = InputFiles()
    for entry in entries:
        if synthetic.is_builtin_dataset(entry):
            files.jsonl.append(str(synthetic.materialize_builtin_dataset(entry, "train")))
        elif _URI.match(entry):
            _add_uri(entry, files)
        elif Path(entry).expanduser().exists():
            _add_local(Path(entry).expanduser(), entry, files)
        elif _HUB_NAME.match(entry) and not _has_known_suffix(entry):
            files.records.extend(hub_dataset_files(entry))
        else:
            raise ValueError(
                f"data.train entry {entry!r} does not exist. Give JSONL, CSV or Parquet "
                "files or directories, a saved Hugging Face dataset directory, an "
                "object-store URI, a hub dataset name (owner/name), or a builtin dataset "
                f"({sorted(synthetic.BUILTIN_DATASETS)})."
            )
    if not files:
        raise ValueError(f"data.train {entries!r} holds no JSONL, CSV, Parquet or Arrow file.")
    return files


def _has_known_suffix(entry: str) -> bool:
    return entry.lower().endswith(JSONL_SUFFIXES + CSV_SUFFIXES + RECORD_SUFFIXES)


def _add_local(path: Path, entry: str, files: InputFiles) -> None:
    if path.is_dir() and saved_dataset_files(path):
        files.records.extend(str(f) for f in saved_dataset_files(path))
        return
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            files.add(str(file.resolve()))  # other files in a directory are ignored
        return
    if not files.add(str(path.resolve())):
        raise ValueError(
            f"data.train file {entry!r} has an unknown extension; accepted: "
            f"{list(JSONL_SUFFIXES + CSV_SUFFIXES + RECORD_SUFFIXES)}, or a saved Hugging "
            "Face dataset directory."
        )


def saved_dataset_files(folder: Path) -> list[Path]:
    """The Arrow files of a ``save_to_disk`` directory in their saved order; [] if the
    folder is not one. A ``DatasetDict`` directory gives its ``train`` split."""
    if (folder / "dataset_dict.json").is_file():
        splits = json.loads((folder / "dataset_dict.json").read_text()).get("splits", [])
        if "train" not in splits:
            raise ValueError(
                f"the saved DatasetDict at {folder} has no 'train' split (it has {splits}); "
                "give the directory of the split to train on."
            )
        return saved_dataset_files(folder / "train")
    if not any((folder / marker).is_file() for marker in _HF_MARKERS):
        return []
    state = folder / "state.json"
    if state.is_file():
        names = [entry["filename"] for entry in json.loads(state.read_text())["_data_files"]]
        return [folder / name for name in names]
    return sorted(folder.glob("*.arrow"))


def _add_uri(uri: str, files: InputFiles) -> None:
    if files.add(uri):  # a file URI: untouched, Ray's readers open it
        return
    import pyarrow.fs as pafs

    filesystem, root = pafs.FileSystem.from_uri(uri)
    scheme = uri.split("://", 1)[0]
    listed = filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
    found = [info.path for info in listed if info.type == pafs.FileType.File]
    for path in sorted(found):
        files.add(f"{scheme}://{path}")
    if not found:
        raise ValueError(f"data.train URI {uri!r} holds no file; give a file or a folder URI.")


def hub_dataset_files(name: str) -> list[str]:
    """The local Arrow files of a hub dataset (``owner/name[:split]``), downloaded once."""
    repo, _, split = name.partition(":")
    split = split or "train"
    howto = (
        f"On a machine with internet run: python -c \"import datasets; "
        f"datasets.load_dataset('{repo}', split='{split}').save_to_disk('DIR')\", copy DIR "
        "here and give data.train=DIR (or export the rows to JSONL/Parquet)."
    )
    offline = [var for var in _OFFLINE_VARS
               if os.environ.get(var, "").lower() in ("1", "true", "yes", "on")]
    if offline:
        raise ValueError(
            f"data.train entry {name!r} is not a local path, so it was read as a Hugging "
            f"Face hub dataset, but the hub is offline ({offline[0]}=1). {howto}"
        )
    try:
        import datasets
    except ImportError as exc:
        raise ValueError(
            f"data.train entry {name!r} names a Hugging Face hub dataset; reading it needs "
            f"the `datasets` package (pip install datasets). {howto}"
        ) from exc
    logger.info("downloading hub dataset %s (split %s)", repo, split)
    loaded = datasets.load_dataset(repo, split=split)
    return [entry["filename"] for entry in loaded.cache_files]


def read_rows(config: DataConfig) -> ray.data.Dataset:
    """Every input row in the normal form of ``platform.data.rows``, bad rows included."""
    files = resolve_inputs(config.train)
    options = rows.ReadOptions.from_config(config)
    readers = [
        (files.jsonl, JsonLinesDatasource, rows.normalize_jsonl_batch, "pandas"),
        (files.csv, CsvRowsDatasource, rows.normalize_csv_batch, "pandas"),
        (files.records, RecordFilesDatasource, rows.normalize_records_batch, "pyarrow"),
    ]
    datasets = [
        # One batch per block: files of different columns never meet in one batch.
        ray.data.read_datasource(source(paths)).map_batches(
            normalize, batch_size=None, batch_format=batch_format,
            fn_kwargs={"options": options})
        for paths, source, normalize, batch_format in readers if paths
    ]
    normal = datasets[0] if len(datasets) == 1 else datasets[0].union(*datasets[1:])
    return normal.limit(config.max_input_rows) if config.max_input_rows else normal
