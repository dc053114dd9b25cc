"""Scored rows (HelpSteer2 style) to binary rows or pairs, by the paper's rules.

The responses of one prompt are grouped (by the prompt hash, then the prompt text). A
prompt whose responses do not have two different scores makes no pair: its rows are
dropped and counted. For a paired objective the prompt gives one pair, its highest-scored
response (chosen) against its lowest (rejected), earlier rows first among equal scores;
its other responses are dropped and counted. For a binary objective every response of a
prompt that makes a pair is kept, thumbs-up when its score reaches ``data.up_threshold``:
the binary set holds exactly the prompts of the paired set, for a fair comparison.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa
import ray.data

from platform.data.formats import BINARY, PAIRED
from platform.data.tokenize import prepared_schema

if TYPE_CHECKING:  # objectives.base pulls in torch; the grouping workers need not
    from objectives.base import DataShape

NO_PAIR = "scored prompt without two different scores"
OUTSIDE_PAIR = "scored response outside its prompt's pair"
DROPPED_COLUMN = "dropped"  # the column the pairing adds: why a row was dropped, or ""


ROWS_PER_PARTITION = 100_000


def pair_scored(scored: ray.data.Dataset, shape: DataShape, rows: int) -> ray.data.Dataset:
    """Kept and dropped scored rows, marked; kept rows have kind binary or paired.

    ``rows`` (the number of scored rows) sizes the shuffle that groups them by prompt.
    """
    partitions = max(1, min(64, rows // ROWS_PER_PARTITION + 1))
    return scored.groupby("prompt_hash", num_partitions=partitions).map_groups(
        _pair_groups, batch_format="pandas", fn_kwargs={"shape": shape})


def marked_schema() -> pa.Schema:
    """Tokenized normal rows plus the pairing's column."""
    return prepared_schema().append(pa.field(DROPPED_COLUMN, pa.string()))


def _pair_groups(group: pd.DataFrame, shape: DataShape) -> pa.Table:
    parts = [_pair_prompt(rows, shape)
             for _, rows in group.groupby(["chat", "prompt"], sort=False)]
    # An explicit schema keeps the id columns lists (not tensors) for the union that follows.
    table = pa.Table.from_pandas(pd.concat(parts, ignore_index=True), schema=marked_schema(),
                                 preserve_index=False)
    return table.replace_schema_metadata(None)  # pandas' dtype notes confuse later readers


def _pair_prompt(rows: pd.DataFrame, shape: DataShape) -> pd.DataFrame:
    ranked = rows.sort_values(["score", "source", "line"], ascending=[False, True, True])
    if ranked["score"].iloc[0] == ranked["score"].iloc[-1]:
        return _mark(ranked, kind=None, reason=NO_PAIR)
    if shape == BINARY:
        return _mark(ranked, kind=BINARY, reason="")
    best = ranked.iloc[[0]]
    worst = ranked.sort_values(["score", "source", "line"]).iloc[[0]]
    pair = best.assign(
        kind=PAIRED, completion="", chosen=best["completion"].to_numpy(),
        rejected=worst["completion"].to_numpy(), chosen_ids=best["completion_ids"].to_numpy(),
        rejected_ids=worst["completion_ids"].to_numpy(),
        completion_ids=[[]], **{DROPPED_COLUMN: ""})
    rest = ranked.drop(index=[best.index[0], worst.index[0]])
    return pd.concat([pair, _mark(rest, kind=None, reason=OUTSIDE_PAIR)], ignore_index=True)


def _mark(rows: pd.DataFrame, kind: str | None, reason: str) -> pd.DataFrame:
    marked = rows.assign(**{DROPPED_COLUMN: reason})
    return marked.assign(kind=kind) if kind else marked


def count_outcomes(batch: pa.Table) -> pd.DataFrame:
    """Kept rows per kind and label (a pair stands for two input rows), dropped rows per
    reason."""
    frame = batch.select(["kind", "label", DROPPED_COLUMN]).to_pandas()
    kept = frame[frame[DROPPED_COLUMN] == ""]
    dropped = frame[frame[DROPPED_COLUMN] != ""]
    rows = [{"what": f"{kind}/{label}", "n": int(n)}
            for (kind, label), n in kept.groupby(["kind", "label"]).size().items()]
    rows += [{"what": f"dropped/{reason}", "n": int(n)}
             for reason, n in dropped.groupby(DROPPED_COLUMN).size().items()]
    return pd.DataFrame(rows, columns=["what", "n"])
