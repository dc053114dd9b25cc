"""The training data stream: read, check, tokenize, convert, balance and shuffle with Ray Data.

1. ``sources``: the entries of ``data.train`` read into normal rows (``rows``, ``formats``);
2. ``tokenize``: every input row tokenized once; the result is materialized in Ray's object
   store, which spills blocks to disk when they outgrow its share of memory;
3. ``summary``: the counting pass over those blocks (counts, bad rows, length policy,
   fingerprint digest); one small row per block reaches the driver;
4. ``usable``: the rows of the objective's shape, scored rows paired (``scored``);
5. ``balance``, per-row weights, a seeded shuffle, and the trainer's columns (``assemble``).

The stream re-runs steps 4-5 from the materialized blocks every epoch, in the same seeded
order; the trainer cuts it into equal shards, one per worker (see :func:`steps_per_epoch`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import ray.data

from objectives.base import DataShape, RowSample, RowWeighter
from platform.config import DataConfig
from platform.data.assemble import (
    BINARY_COLUMNS,
    MISMATCHED_COLUMNS,
    PAIRED_COLUMNS,
    assemble_binary_batch,
    assemble_paired_batch,
)
from platform.data.balance import balance, row_sample, weigh_rows
from platform.data.fingerprint import fingerprint
from platform.data.rows import TEST, TRAIN
from platform.data.sources import read_rows
from platform.data.summary import DataSummary, check_shape, report, summarize
from platform.data.tokenize import LengthLimits, encode_batch
from platform.data.usable import split_rows, usable_rows

__all__ = ["DataSummary", "build_stream", "read_rows", "read_split", "summarize",
           "total_steps", "steps_per_epoch", "epochs_needed"]

logger = logging.getLogger(__name__)

RowWeightFitter = Callable[[RowSample], RowWeighter | None]


def length_limits(config: DataConfig) -> LengthLimits:
    return LengthLimits(config.max_length, config.max_prompt_length,
                        config.max_completion_length)


def prepare_rows(config: DataConfig, tokenizer_path: str) -> ray.data.Dataset:
    """Normal rows with their token ids and truncation flags (not yet executed)."""
    return read_rows(config).map_batches(
        encode_batch, batch_size=None, batch_format="pyarrow",
        fn_kwargs={"tokenizer_path": tokenizer_path, "limits": length_limits(config)})


def build_stream(
    config: DataConfig,
    shape: DataShape,
    tokenizer_path: str,
    seed: int,
    objective: str,
    requires_both_labels: bool = True,
    mismatched_pairs: bool = False,
    fit_row_weights: RowWeightFitter | None = None,
) -> tuple[ray.data.Dataset, DataSummary]:
    """The shuffled, balanced, tokenized training stream and its summary.

    ``mismatched_pairs`` adds each binary row's prompt scored with another row's completion
    (objectives with ``needs_mismatched_pairs``, such as KTO). ``fit_row_weights`` (an
    objective's ``fit_row_weights`` bound to its config) learns per-row weights from a
    sample of the binary rows; they travel in a ``weight`` column.
    """
    # Blocks keep their order whichever task finishes first: a restarted or resumed run must
    # see exactly the rows, in the order, that the interrupted one saw.
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    drop_long = config.truncation == "drop"
    prepared = prepare_rows(config, tokenizer_path).materialize()
    summary = summarize(prepared, drop_long)
    usable = usable_rows(prepared, shape, drop_long, summary)
    summary.check_accounting()
    report(summary, config.on_bad_row, config.truncation)
    check_shape(summary, shape, objective, requires_both_labels)
    summary.fingerprint = fingerprint(summary.digest, config, shape, tokenizer_path)
    logger.info("data fingerprint %s", summary.fingerprint)

    limits = length_limits(config)
    if shape == DataShape.PAIRED:
        stream, summary.train_rows = usable, summary.train_pairs
        assemble, kwargs, columns = assemble_paired_batch, {}, list(PAIRED_COLUMNS)
    else:
        stream, summary.train_rows, weighted = _binary_stream(usable, summary, config, seed,
                                                              fit_row_weights)
        assemble, kwargs = assemble_binary_batch, {"mismatched_pairs": mismatched_pairs}
        columns = (BINARY_COLUMNS + (MISMATCHED_COLUMNS if mismatched_pairs else [])
                   + (["weight"] if weighted else []))
    summary.columns = columns
    stream = stream.random_shuffle(seed=seed)
    stream = stream.map_batches(assemble, batch_format="pyarrow",
                                fn_kwargs={"limits": limits, **kwargs})
    return stream.select_columns(columns), summary


def _binary_stream(
    usable: ray.data.Dataset, summary: DataSummary, config: DataConfig, seed: int,
    fit_row_weights: RowWeightFitter | None,
) -> tuple[ray.data.Dataset, int, bool]:
    """(balanced rows, rows per epoch, whether they carry a ``weight`` column)."""
    total = summary.up_rows + summary.down_rows
    weighter = fit_row_weights(row_sample(usable, total, seed)) if fit_row_weights else None
    if weighter is not None:
        usable = usable.map_batches(weigh_rows, batch_format="pyarrow",
                                    fn_kwargs={"weighter": weighter})
    stream, rows = balance(usable, summary.up_rows, summary.down_rows, config.balance, seed)
    class_weighted = config.balance == "weight" and min(summary.up_rows, summary.down_rows) > 0
    return stream, rows, weighter is not None or class_weighted


def read_split(config: DataConfig, split: str = TEST) -> ray.data.Dataset:
    """The good normal rows (text, not tokenized) of one split, e.g. the held-out test
    prompts of ``data.test_fraction`` for evaluation."""
    if split not in (TRAIN, TEST):
        raise ValueError(f"unknown split {split!r}; the splits are {TRAIN!r} and {TEST!r}.")
    return read_rows(config).map_batches(split_rows, batch_format="pyarrow",
                                         fn_kwargs={"split": split})


def steps_per_epoch(train_rows: int, num_workers: int, micro_batch_size: int,
                    grad_accum_steps: int) -> int:
    """Optimizer steps per epoch when every worker gets an equal shard.

    The remainder: the trainer cuts each epoch of the stream into equal shards, one per
    worker (``equal=True``, ``platform.train.sharding``), which drops the last
    ``train_rows % num_workers`` rows of the epoch, and each worker drops its last
    incomplete micro-batch (``drop_last``), so no worker waits for another in a collective.
    At most ``num_workers * micro_batch_size - 1`` rows of an epoch go unused this way; the
    stream's order is seeded and the same every epoch, so they are the same rows every
    epoch (a seeded random set, not the end of a file). Micro-batches past the last whole
    group of ``grad_accum_steps`` are not counted as a step here.
    """
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
