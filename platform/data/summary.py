"""What the data holds: the counting pass, its :class:`DataSummary`, and its report.

The counting pass runs one small aggregation per block (a JSON line of counts, the first
bad rows and the block's content digest), so memory on the driver stays bounded. Every
input row is accounted for: ``input_rows == good_rows + bad_rows + dropped_rows``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa
import ray.data

from platform.data import fingerprint
from platform.data.formats import BINARY, PAIRED, SCORED, defect_reason
from platform.data.rows import TEST

if TYPE_CHECKING:  # objectives.base pulls in torch; the counting workers need not
    from objectives.base import DataShape

logger = logging.getLogger(__name__)

QUARANTINE_LIMIT = 100
DROPPED_LONG = "over the length limits (data.truncation=drop)"
_COUNTED_COLUMNS = ["source", "line", "problem", "split", *fingerprint.CONTENT_COLUMNS]
_FLAG_COLUMNS = ["prompt_truncated", "completion_truncated"]


@dataclass
class DataSummary:
    """Counts of the input rows and of the training stream built from them.

    ``binary_up``, ``binary_down``, ``pairs`` and ``scored`` count the good input rows of
    the training split that the stream is built from; ``test_rows`` the good rows held
    out; ``dropped`` the good rows a policy removed, by reason. ``long_prompts`` and
    ``long_completions`` count training rows over the length limits (truncated, or dropped
    under ``data.truncation=drop``). ``up_rows``/``down_rows`` are the classes of the binary
    training rows before balancing, ``train_pairs`` the pairs of a paired objective, and
    ``train_rows`` the rows of one epoch of the stream.
    """

    input_rows: int = 0
    binary_up: int = 0
    binary_down: int = 0
    pairs: int = 0
    scored: int = 0
    test_rows: int = 0
    problems: Counter = field(default_factory=Counter)  # reason -> skipped rows
    quarantine: list[dict] = field(default_factory=list)  # first bad rows: source, line, why
    dropped: Counter = field(default_factory=Counter)  # reason -> good rows dropped by policy
    long_prompts: int = 0
    long_completions: int = 0
    up_rows: int = 0
    down_rows: int = 0
    train_pairs: int = 0
    train_rows: int = 0  # rows of the balanced stream per epoch
    fingerprint: str = ""  # SHA-256 of the processed training data (platform.data.fingerprint)
    columns: list[str] = field(default_factory=list)  # the stream's columns, in order
    digest: fingerprint.Digest = (0, 0, 0)

    @property
    def bad_rows(self) -> int:
        return sum(self.problems.values())

    @property
    def dropped_rows(self) -> int:
        return sum(self.dropped.values())

    @property
    def good_rows(self) -> int:
        return self.binary_up + self.binary_down + self.pairs + self.scored + self.test_rows

    def check_accounting(self) -> None:
        """Raise if an input row went missing: the counts must add up."""
        if self.input_rows != self.good_rows + self.bad_rows + self.dropped_rows:
            raise RuntimeError(
                f"data accounting is off: {self.input_rows} input rows but {self.good_rows} "
                f"good + {self.bad_rows} bad + {self.dropped_rows} dropped; this is a bug of "
                "the data pipeline, please report it with the data config."
            )

    def add_block(self, stats: dict) -> None:
        """Add one block's counts (see :func:`count_block`)."""
        self.input_rows += stats["input"]
        self.problems.update(stats["problems"])
        room = QUARANTINE_LIMIT - len(self.quarantine)
        self.quarantine.extend(stats["examples"][:max(room, 0)])
        self.test_rows += stats["test"]
        self.long_prompts += stats["long_prompts"]
        self.long_completions += stats["long_completions"]
        if stats["dropped_long"]:
            self.dropped[DROPPED_LONG] += stats["dropped_long"]
        kinds = Counter(stats["kinds"])
        self.binary_up += kinds[f"{BINARY}/True"]
        self.binary_down += kinds[f"{BINARY}/False"]
        self.pairs += kinds[f"{PAIRED}/True"] + kinds[f"{PAIRED}/False"]
        self.scored += kinds[f"{SCORED}/True"] + kinds[f"{SCORED}/False"]
        self.digest = fingerprint.add_digests(self.digest, tuple(stats["digest"]))


def count_block(batch: pa.Table, drop_long: bool) -> pd.DataFrame:
    """One row of JSON counts for a block of normal rows (tokenized or not)."""
    flags = [name for name in _FLAG_COLUMNS if name in batch.column_names]
    frame = batch.select(_COUNTED_COLUMNS + flags).to_pandas()
    bad = frame[frame["problem"] != ""]
    good = frame[frame["problem"] == ""]
    train = good[good["split"] != TEST]
    prompt_long = train["prompt_truncated"] if flags else pd.Series(False, index=train.index)
    completion_long = (train["completion_truncated"] if flags
                       else pd.Series(False, index=train.index))
    too_long = prompt_long | completion_long
    kept = train[~too_long] if drop_long else train
    examples = bad[["source", "line", "problem"]].head(QUARANTINE_LIMIT)
    stats = {
        "input": len(frame),
        "problems": Counter(defect_reason(problem) for problem in bad["problem"]),
        "examples": examples.to_dict(orient="records"),
        "test": len(good) - len(train),
        "long_prompts": int(prompt_long.sum()),
        "long_completions": int(completion_long.sum()),
        "dropped_long": int(too_long.sum()) if drop_long else 0,
        "kinds": Counter(f"{kind}/{label}" for kind, label in zip(kept["kind"], kept["label"],
                                                                   strict=True)),
        "digest": fingerprint.content_digest(kept),
    }
    return pd.DataFrame({"stats": [json.dumps(stats, default=int)]})


def summarize(normal: ray.data.Dataset, drop_long: bool = False) -> DataSummary:
    """Count a dataset of normal rows (one small row per block reaches the driver)."""
    summary = DataSummary()
    counts = normal.map_batches(count_block, batch_size=None, batch_format="pyarrow",
                                fn_kwargs={"drop_long": drop_long})
    for row in counts.iter_rows():
        summary.add_block(json.loads(row["stats"]))
    return summary


def report(summary: DataSummary, policy: str, truncation: str) -> None:
    """Log what the data holds, the bad rows by reason and the length policy's work."""
    logger.info(
        "read %d rows: %d pairs, %d thumbs-up, %d thumbs-down, %d scored, %d held out for "
        "test, %d bad, %d dropped", summary.input_rows, summary.pairs, summary.binary_up,
        summary.binary_down, summary.scored, summary.test_rows, summary.bad_rows,
        summary.dropped_rows,
    )
    for reason, count in summary.problems.most_common():
        logger.warning("skipped %d bad row(s) (data.on_bad_row=%s): %s", count, policy, reason)
    for reason, count in summary.dropped.most_common():
        logger.info("dropped %d row(s): %s", count, reason)
    done = "dropped" if truncation == "drop" else "truncated"
    logger.info("length limits (data.truncation=%s): %d prompt(s) and %d completion(s) over "
                "the limits were %s", truncation, summary.long_prompts,
                summary.long_completions, done)


def check_shape(summary: DataSummary, shape: DataShape, objective: str,
                requires_both_labels: bool) -> None:
    """Refuse data that cannot serve the objective, saying what the data holds."""
    held = (f"{summary.pairs} pairs, {summary.binary_up} thumbs-up and "
            f"{summary.binary_down} thumbs-down rows, {summary.scored} usable scored rows")
    if shape == PAIRED and summary.train_pairs == 0:
        raise ValueError(
            f"objective {objective!r} trains on paired rows (prompt, chosen, rejected) but "
            f"the data holds {held}. Use paired or scored data, or a binary objective such "
            "as bco."
        )
    if shape == PAIRED and summary.binary_up + summary.binary_down:
        logger.warning(
            "objective %s trains on pairs: %d binary rows without a partner are not used",
            objective, summary.binary_up + summary.binary_down,
        )
    up, down = summary.up_rows, summary.down_rows
    if shape == BINARY and requires_both_labels and (up == 0 or down == 0):
        raise ValueError(
            f"objective {objective!r} needs both thumbs-up and thumbs-down rows but the "
            f"data holds {held}. Add rows of the missing class."
        )
    if shape == BINARY and up + down == 0:
        raise ValueError(f"the data holds no usable row ({held}); see the bad-row counts.")
