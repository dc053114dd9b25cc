"""The rows an objective trains on, from the tokenized normal rows.

Training rows are the good rows of the training split that the length policy keeps. A
paired objective gets the pairs (and the pairs made from scored rows); a binary objective
gets the binary rows, each pair as a thumbs-up row (chosen) and a thumbs-down row
(rejected), and the scored rows of prompts that make a pair (``platform.data.scored``).
The pairing of scored rows updates the summary: its dropped rows move from ``scored`` to
``dropped``.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import ray.data

from platform.data import scored as scoring
from platform.data.formats import BINARY, PAIRED, SCORED
from platform.data.rows import TEST
from platform.data.summary import DataSummary
from platform.data.tokenize import prepared_schema

if TYPE_CHECKING:  # objectives.base pulls in torch; the workers running these need not
    from objectives.base import DataShape

logger = logging.getLogger(__name__)


def training_rows(batch: pa.Table, drop_long: bool) -> pa.Table:
    """Good rows of the training split, less those over the limits under ``drop``."""
    mask = pc.and_(pc.equal(batch.column("problem"), ""),
                   pc.not_equal(batch.column("split"), TEST))
    if drop_long:
        too_long = pc.or_(batch.column("prompt_truncated"), batch.column("completion_truncated"))
        mask = pc.and_(mask, pc.invert(too_long))
    return batch.filter(mask)


def split_rows(batch: pa.Table, split: str) -> pa.Table:
    """Good rows of one split."""
    mask = pc.and_(pc.equal(batch.column("problem"), ""), pc.equal(batch.column("split"), split))
    return batch.filter(mask)


def shape_rows(batch: pa.Table, shape: DataShape) -> pa.Table:
    """Binary and paired rows in the objective's shape (scored rows are left out)."""
    kinds = batch.column("kind")
    paired = batch.filter(pc.equal(kinds, PAIRED))
    if shape == PAIRED:
        return paired
    binary = batch.filter(pc.equal(kinds, BINARY))
    return pa.concat_tables([binary, _as_binary(paired, "chosen", True),
                             _as_binary(paired, "rejected", False)])


def _as_binary(paired: pa.Table, side: str, label: bool) -> pa.Table:
    n = paired.num_rows
    replaced = {"kind": pa.array([BINARY] * n, pa.string()),
                "completion": paired.column(side),
                "completion_ids": paired.column(f"{side}_ids"),
                "label": pa.array([label] * n, pa.bool_()),
                "chosen": pa.array([""] * n, pa.string()),
                "rejected": pa.array([""] * n, pa.string())}
    for name, values in replaced.items():
        paired = paired.set_column(paired.column_names.index(name), name, values)
    return paired


def usable_rows(prepared: ray.data.Dataset, shape: DataShape, drop_long: bool,
                summary: DataSummary) -> ray.data.Dataset:
    """The objective's training rows; fills ``up_rows``/``down_rows`` or ``train_pairs``."""
    kept = prepared.map_batches(training_rows, batch_format="pyarrow",
                                fn_kwargs={"drop_long": drop_long})
    usable = kept.map_batches(shape_rows, batch_format="pyarrow", fn_kwargs={"shape": shape})
    summary.up_rows = summary.binary_up + summary.pairs
    summary.down_rows = summary.binary_down + summary.pairs
    summary.train_pairs = summary.pairs
    if summary.scored:
        usable = usable.union(_scored_rows(kept, shape, summary))
    return usable


def _scored_rows(kept: ray.data.Dataset, shape: DataShape,
                 summary: DataSummary) -> ray.data.Dataset:
    """Scored rows paired by prompt; their outcome counts go into the summary."""
    only_scored = kept.map_batches(_kind_rows, batch_format="pyarrow",
                                   fn_kwargs={"kind": SCORED})
    marked = scoring.pair_scored(only_scored, shape, summary.scored).materialize()
    counts = marked.map_batches(scoring.count_outcomes, batch_size=None,
                                batch_format="pyarrow")
    for row in counts.iter_rows():
        what, n = row["what"], int(row["n"])
        if what.startswith("dropped/"):
            summary.scored -= n
            summary.dropped[what.removeprefix("dropped/")] += n
        elif what.startswith(f"{PAIRED}/"):
            summary.train_pairs += n
        elif what == f"{BINARY}/True":
            summary.up_rows += n
        else:
            summary.down_rows += n
    logger.info("scored rows: %d kept; dropped: %s", summary.scored,
                json.dumps({k: v for k, v in summary.dropped.items() if k.startswith("scored")}))
    names = prepared_schema().names
    return marked.map_batches(_kept_pairing, batch_format="pyarrow",
                              fn_kwargs={"names": names})


def _kind_rows(batch: pa.Table, kind: str) -> pa.Table:
    return batch.filter(pc.equal(batch.column("kind"), kind))


def _kept_pairing(batch: pa.Table, names: list[str]) -> pa.Table:
    return batch.filter(pc.equal(batch.column(scoring.DROPPED_COLUMN), "")).select(names)
