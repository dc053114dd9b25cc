"""The training data stream: read, check, convert, balance, shuffle and tokenize with Ray Data.

Two passes over the input: a counting pass (class counts, bad rows; a few small rows per
block reach the driver, so memory stays bounded) and the training stream itself, which Ray
Train splits into equal shards, one per worker.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import ray.data

from objectives.base import DataShape, RowSample, RowWeighter
from platform.config import DataConfig
from platform.data import rows, synthetic
from platform.data.jsonl import JsonLinesDatasource
from platform.data.tokenize import LengthLimits, tokenize_binary_batch, tokenize_paired_batch

logger = logging.getLogger(__name__)

BINARY_COLUMNS = ["input_ids", "prompt_length", "label"]
MISMATCHED_COLUMNS = ["mismatched_input_ids", "mismatched_prompt_length"]
PAIRED_COLUMNS = ["chosen_input_ids", "rejected_input_ids", "prompt_length"]
QUARANTINE_LIMIT = 100
_JSONL_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")
_PARQUET_SUFFIXES = (".parquet",)


@dataclass
class DataSummary:
    """What the counting pass found, and what the training stream will hold."""

    input_rows: int = 0
    binary_up: int = 0
    binary_down: int = 0
    pairs: int = 0
    problems: Counter = field(default_factory=Counter)  # reason -> skipped rows
    quarantine: list[dict] = field(default_factory=list)  # first bad rows: source, line, why
    train_rows: int = 0  # rows of the balanced stream per epoch

    @property
    def bad_rows(self) -> int:
        return sum(self.problems.values())


def resolve_paths(entries: list[str]) -> tuple[list[str], list[str]]:
    """(JSONL files, Parquet files) named by ``data.train``; builtins are written first."""
    jsonl: list[str] = []
    parquet: list[str] = []
    for entry in entries:
        if synthetic.is_builtin_dataset(entry):
            jsonl.append(str(synthetic.materialize_builtin_dataset(entry, "train")))
            continue
        path = Path(entry).expanduser()
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        if not path.exists():
            raise ValueError(
                f"data.train entry {entry!r} does not exist. Give JSONL or Parquet files or "
                f"directories, or a builtin dataset ({sorted(synthetic.BUILTIN_DATASETS)})."
            )
        for file in files:
            name = file.name.lower()
            if name.endswith(_JSONL_SUFFIXES):
                jsonl.append(str(file.resolve()))
            elif name.endswith(_PARQUET_SUFFIXES):
                parquet.append(str(file.resolve()))
            elif not path.is_dir():
                raise ValueError(
                    f"data.train file {entry!r} has an unknown extension; accepted: "
                    f"{list(_JSONL_SUFFIXES + _PARQUET_SUFFIXES)}."
                )
    if not jsonl and not parquet:
        raise ValueError(f"data.train {entries!r} holds no JSONL or Parquet file.")
    return jsonl, parquet


def read_rows(config: DataConfig) -> ray.data.Dataset:
    """Every input row in the normal form of ``platform.data.rows``, bad rows included."""
    jsonl, parquet = resolve_paths(config.train)
    strict = config.on_bad_row == "strict"
    datasets = []
    if jsonl:
        datasets.append(
            ray.data.read_datasource(JsonLinesDatasource(jsonl)).map_batches(
                rows.normalize_jsonl_batch,
                batch_format="pandas",
                fn_kwargs={"expected": config.format, "strict": strict},
            )
        )
    if parquet:
        datasets.append(
            ray.data.read_parquet(parquet, include_paths=True).map_batches(
                rows.normalize_records_batch,
                batch_format="pandas",
                fn_kwargs={"expected": config.format, "strict": strict},
            )
        )
    normal = datasets[0] if len(datasets) == 1 else datasets[0].union(*datasets[1:])
    return normal.limit(config.max_input_rows) if config.max_input_rows else normal


def _count_batch(batch: pd.DataFrame) -> pd.DataFrame:
    """One small row per (kind, label, problem) of a block, with a few bad-row examples."""
    counts = batch.groupby(["kind", "label", "problem"], dropna=False).size()
    bad = batch[batch["problem"] != ""].head(QUARANTINE_LIMIT)
    examples = bad[["source", "line", "problem"]].to_dict(orient="records")
    out = [
        {"kind": kind, "label": bool(label), "problem": problem, "n": int(n), "examples": ""}
        for (kind, label, problem), n in counts.items()
    ]
    if out:
        out[0]["examples"] = json.dumps(examples)
    return pd.DataFrame(out, columns=["kind", "label", "problem", "n", "examples"])


def summarize(normal: ray.data.Dataset) -> DataSummary:
    summary = DataSummary()
    for row in normal.map_batches(_count_batch, batch_format="pandas").iter_rows():
        count = int(row["n"])
        summary.input_rows += count
        if row["problem"]:
            summary.problems[row["problem"].split(" (row ")[0]] += count
        elif row["kind"] == rows.PAIRED:
            summary.pairs += count
        elif row["label"]:
            summary.binary_up += count
        else:
            summary.binary_down += count
        if row["examples"] and len(summary.quarantine) < QUARANTINE_LIMIT:
            examples = json.loads(row["examples"])
            summary.quarantine.extend(examples[: QUARANTINE_LIMIT - len(summary.quarantine)])
    return summary


def _usable_rows(batch: pd.DataFrame, shape: DataShape) -> pd.DataFrame:
    """Good rows in the objective's shape: pairs for paired objectives; binary rows plus
    each pair split into a thumbs-up and a thumbs-down row for binary ones."""
    good = batch[batch["problem"] == ""]
    if shape == DataShape.PAIRED:
        return good[good["kind"] == rows.PAIRED]
    return rows.paired_to_binary(good)


def _label_rows(batch: pd.DataFrame, label: bool) -> pd.DataFrame:
    return batch[batch["label"] == label]


def check_shape(summary: DataSummary, shape: DataShape, objective: str,
                requires_both_labels: bool) -> None:
    """Refuse data that cannot serve the objective, saying what the data holds."""
    held = (f"{summary.pairs} pairs, {summary.binary_up} thumbs-up and "
            f"{summary.binary_down} thumbs-down rows")
    if shape == DataShape.PAIRED and summary.pairs == 0:
        raise ValueError(
            f"objective {objective!r} trains on paired rows (prompt, chosen, rejected) but "
            f"the data holds {held}. Use paired data or a binary objective such as bco."
        )
    if shape == DataShape.PAIRED and summary.binary_up + summary.binary_down:
        logger.warning(
            "objective %s trains on pairs: %d binary rows without a partner are not used",
            objective, summary.binary_up + summary.binary_down,
        )
    up = summary.binary_up + summary.pairs
    down = summary.binary_down + summary.pairs
    if shape == DataShape.BINARY and requires_both_labels and (up == 0 or down == 0):
        raise ValueError(
            f"objective {objective!r} needs both thumbs-up and thumbs-down rows but the "
            f"data holds {held}. Add rows of the missing class."
        )
    if shape == DataShape.BINARY and up + down == 0:
        raise ValueError(f"the data holds no usable row ({held}); see the bad-row counts.")


def build_stream(
    config: DataConfig,
    shape: DataShape,
    tokenizer_path: str,
    seed: int,
    objective: str,
    requires_both_labels: bool = True,
    mismatched_pairs: bool = False,
    fit_row_weights: Callable[[RowSample], RowWeighter | None] | None = None,
) -> tuple[ray.data.Dataset, DataSummary]:
    """The shuffled, balanced, tokenized training stream and its summary.

    ``mismatched_pairs`` adds each binary row's prompt scored with another row's completion
    (objectives with ``needs_mismatched_pairs``, such as KTO). ``fit_row_weights`` (an
    objective's ``fit_row_weights`` bound to its config) learns per-row weights from a
    sample of the binary rows; they travel in a ``weight`` column.
    """
    # Read and check once; the counting pass and every branch of the balancing reuse the
    # blocks (Ray's object store spills them to disk when they outgrow memory).
    normal = read_rows(config).materialize()
    summary = summarize(normal)
    _report_problems(summary, config.on_bad_row)
    check_shape(summary, shape, objective, requires_both_labels)
    limits = LengthLimits(config.max_length, config.max_prompt_length,
                          config.max_completion_length)

    if shape == DataShape.PAIRED:
        stream = normal.map_batches(_usable_rows, batch_format="pandas",
                                    fn_kwargs={"shape": shape})
        summary.train_rows = summary.pairs
        tokenize, columns = tokenize_paired_batch, PAIRED_COLUMNS
    else:
        binary = normal.map_batches(_usable_rows, batch_format="pandas",
                                    fn_kwargs={"shape": shape})
        weighter = fit_row_weights(_row_sample(binary, summary, seed)) if fit_row_weights \
            else None
        stream, summary.train_rows = _balance(binary, summary, config.balance, seed)
        tokenize, columns = tokenize_binary_batch, list(BINARY_COLUMNS)
        if weighter is not None:
            stream = stream.map_batches(_weigh_rows, batch_format="pandas",
                                        fn_kwargs={"weighter": weighter})
            columns.append("weight")
        if mismatched_pairs:
            tokenize = functools.partial(tokenize_binary_batch, mismatched_pairs=True)
            columns += MISMATCHED_COLUMNS

    stream = stream.random_shuffle(seed=seed)
    stream = stream.map_batches(
        tokenize, batch_format="pandas",
        fn_kwargs={"tokenizer_path": tokenizer_path, "limits": limits},
    ).select_columns(columns)
    return stream, summary


ROW_SAMPLE_LIMIT = 20_000


def _row_sample(binary: ray.data.Dataset, summary: DataSummary, seed: int) -> RowSample:
    """Up to ``ROW_SAMPLE_LIMIT`` binary rows, drawn with the run's seed."""
    total = summary.binary_up + summary.binary_down + 2 * summary.pairs
    if total > ROW_SAMPLE_LIMIT:
        binary = binary.random_sample(ROW_SAMPLE_LIMIT / total, seed=seed)
    rows_ = binary.select_columns(["prompt", "completion", "label"]).take_all()
    return RowSample(prompts=[r["prompt"] for r in rows_],
                     completions=[r["completion"] for r in rows_],
                     labels=[bool(r["label"]) for r in rows_])


def _weigh_rows(batch: pd.DataFrame, weighter: RowWeighter) -> pd.DataFrame:
    weights = weighter(list(batch["prompt"]), [bool(x) for x in batch["label"]])
    if len(weights) != len(batch):
        raise ValueError(
            f"the objective's row weighter returned {len(weights)} weights for "
            f"{len(batch)} rows; it must return one weight per row."
        )
    return batch.assign(weight=[float(w) for w in weights])


def _balance(
    binary: ray.data.Dataset, summary: DataSummary, mode: str, seed: int
) -> tuple[ray.data.Dataset, int]:
    """Oversample the minority class to the size of the majority (the paper's choice)."""
    up = summary.binary_up + summary.pairs
    down = summary.binary_down + summary.pairs
    if mode == "none" or up == down or min(up, down) == 0:
        return binary, up + down

    minority_label = up < down
    small, large = sorted((up, down))
    minority = binary.map_batches(_label_rows, batch_format="pandas",
                                  fn_kwargs={"label": minority_label})
    majority = binary.map_batches(_label_rows, batch_format="pandas",
                                  fn_kwargs={"label": not minority_label})
    copies, remainder = divmod(large, small)
    parts = [minority] * copies
    if remainder:
        # The extra rows are a seeded random subset, so no row is favoured by file order.
        parts.append(minority.random_shuffle(seed=seed + 1).limit(remainder))
    logger.info(
        "balancing by oversampling: %d thumbs-%s rows repeated to %d (x%.2f)",
        small, "up" if minority_label else "down", large, large / small,
    )
    return majority.union(*parts), 2 * large


def _report_problems(summary: DataSummary, policy: str) -> None:
    logger.info(
        "read %d rows: %d pairs, %d thumbs-up, %d thumbs-down, %d bad",
        summary.input_rows, summary.pairs, summary.binary_up, summary.binary_down,
        summary.bad_rows,
    )
    for reason, count in summary.problems.most_common():
        logger.warning("skipped %d bad row(s) (data.on_bad_row=%s): %s", count, policy, reason)


def steps_per_epoch(train_rows: int, num_workers: int, micro_batch_size: int,
                    grad_accum_steps: int) -> int:
    """Optimizer steps per epoch when every worker gets an equal shard and the last
    incomplete micro-batch is dropped (so no worker waits for another in a collective)."""
    rows_per_worker = train_rows // num_workers
    micro_batches = rows_per_worker // micro_batch_size
    return micro_batches // grad_accum_steps


def total_steps(train_rows: int, num_workers: int, micro_batch_size: int,
                grad_accum_steps: int, epochs: int, max_steps: int | None) -> int:
    per_epoch = steps_per_epoch(train_rows, num_workers, micro_batch_size, grad_accum_steps)
    if per_epoch == 0:
        needed = num_workers * micro_batch_size * grad_accum_steps
        raise ValueError(
            f"the training stream holds {train_rows} rows per epoch, fewer than one global "
            f"batch ({num_workers} workers x {micro_batch_size} rows x {grad_accum_steps} "
            f"accumulation steps = {needed}). Add data or lower train.micro_batch_size, "
            "train.grad_accum_steps or resources.num_workers."
        )
    steps = per_epoch * epochs
    return min(steps, max_steps) if max_steps else steps


def epochs_needed(steps: int, per_epoch: int) -> int:
    return math.ceil(steps / per_epoch)
