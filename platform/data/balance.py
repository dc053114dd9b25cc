"""Class balance of the binary training rows, and the objective's per-row weights.

Modes (``data.balance``):

- ``oversample`` (the paper's choice): the minority class is repeated to the size of the
  majority; whole copies of every row, then a seeded random subset for the remainder, so
  the classes are exactly equal;
- ``undersample``: a seeded random subset of the majority class, the size of the minority;
- ``weight``: every row is kept once and weighs ``rows / (2 * rows of its class)``, so both
  classes weigh the same and the mean weight is 1; it multiplies any weight the objective
  gave the row (``fit_row_weights``);
- ``none``: the rows as they are.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import ray.data

if TYPE_CHECKING:  # objectives.base pulls in torch; the balancing workers need not
    from objectives.base import RowSample, RowWeighter

logger = logging.getLogger(__name__)

WEIGHT = "weight"
ROW_SAMPLE_LIMIT = 20_000


def balance(binary: ray.data.Dataset, up: int, down: int, mode: str,
            seed: int) -> tuple[ray.data.Dataset, int]:
    """The balanced rows and their number per epoch."""
    if mode == "none" or min(up, down) == 0:
        return binary, up + down
    if mode == "weight":
        weights = {True: (up + down) / (2 * up), False: (up + down) / (2 * down)}
        logger.info("balancing by weight: thumbs-up rows weigh %.4f, thumbs-down rows %.4f",
                    weights[True], weights[False])
        return binary.map_batches(_class_weights, batch_format="pyarrow",
                                  fn_kwargs={"weights": weights}), up + down
    if up == down:
        return binary, up + down
    minority_label = up < down
    small, large = sorted((up, down))
    minority = binary.map_batches(label_rows, batch_format="pyarrow",
                                  fn_kwargs={"label": minority_label})
    majority = binary.map_batches(label_rows, batch_format="pyarrow",
                                  fn_kwargs={"label": not minority_label})
    if mode == "undersample":
        logger.info("balancing by undersampling: %d thumbs-%s rows reduced to %d", large,
                    "down" if minority_label else "up", small)
        return minority.union(majority.random_shuffle(seed=seed + 1).limit(small)), 2 * small
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


def label_rows(batch: pa.Table, label: bool) -> pa.Table:
    return batch.filter(pc.equal(batch.column("label"), label))


def _class_weights(batch: pa.Table, weights: dict[bool, float]) -> pa.Table:
    labels = batch.column("label").to_pylist()
    values = [weights[bool(label)] for label in labels]
    if WEIGHT in batch.column_names:  # the objective's own weights: multiply, not replace
        values = [v * w for v, w in zip(values, batch.column(WEIGHT).to_pylist(), strict=True)]
        return batch.set_column(batch.column_names.index(WEIGHT), WEIGHT,
                                pa.array(values, pa.float64()))
    return batch.append_column(WEIGHT, pa.array(values, pa.float64()))


def row_sample(binary: ray.data.Dataset, total: int, seed: int) -> RowSample:
    """Up to about ``ROW_SAMPLE_LIMIT`` binary rows, drawn with the run's seed."""
    if total > ROW_SAMPLE_LIMIT:
        binary = binary.random_sample(ROW_SAMPLE_LIMIT / total, seed=seed)
    from objectives.base import RowSample

    rows = binary.select_columns(["prompt", "completion", "label"]).take_all()
    return RowSample(prompts=[r["prompt"] for r in rows],
                     completions=[r["completion"] for r in rows],
                     labels=[bool(r["label"]) for r in rows])


def weigh_rows(batch: pa.Table, weighter: RowWeighter) -> pa.Table:
    """The objective's per-row weights in a ``weight`` column."""
    weights = weighter(batch.column("prompt").to_pylist(),
                       [bool(label) for label in batch.column("label").to_pylist()])
    if len(weights) != batch.num_rows:
        raise ValueError(
            f"the objective's row weighter returned {len(weights)} weights for "
            f"{batch.num_rows} rows; it must return one weight per row."
        )
    return batch.append_column(WEIGHT, pa.array([float(w) for w in weights], pa.float64()))
