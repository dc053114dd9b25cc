"""Throughput and peak memory of the training data stream at a million rows.

Writes synthetic thumbs-up/down rows (about 40 % thumbs-up, a few malformed) as JSON Lines
shards to a temporary directory, then times ``build_stream`` (reading, checking,
tokenization with the tiny model's tokenizer, the counting pass) and one full epoch of the
stream (balancing by oversampling, shuffling, the trainer's columns), while sampling the
resident memory of this process tree (the driver, the local Ray cluster it starts and every
Ray worker) twice a second. Appends one JSON line to ``bench/results/<name>.jsonl``.

    .venv/bin/python -m bench.data_stream
    .venv/bin/python -m bench.data_stream --rows 100000 --name data_stream_small
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

from bench.process_tree import tree_rss
from bench.run_wall_time import REPO, RESULTS

BAD_EVERY = 10_000  # one malformed row (a string label) per this many rows


def write_shards(folder: Path, rows: int, shards: int, seed: int = 0) -> None:
    """``rows`` synthetic binary rows in ``shards`` JSON Lines files."""
    rng = random.Random(seed)
    per_shard = -(-rows // shards)
    for shard in range(shards):
        lines = []
        for index in range(shard * per_shard, min(rows, (shard + 1) * per_shard)):
            a, b = rng.randrange(1000), rng.randrange(1000)
            right = rng.random() < 0.4
            label: bool | str = right if index % BAD_EVERY else "yes"
            lines.append(json.dumps({
                "prompt": f"Question {index}: what is {a} + {b}?",
                "completion": f"The answer is {a + b if right else a + b + 1}.",
                "label": label}))
        (folder / f"part-{shard:03d}.jsonl").write_text("\n".join(lines) + "\n")


class PeakMemory:
    """The largest resident set size of this process tree, sampled in a thread."""

    def __init__(self, interval_s: float = 0.5) -> None:
        self.peak = 0
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        root = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(root))
            self._stop.wait(self._interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(folder: Path, rows: int) -> dict:
    """Build the stream over ``folder`` and consume one epoch; timings and counts."""
    import ray

    from objectives.base import DataShape
    from platform.config import DataConfig
    from platform.data.pipeline import build_stream
    from platform.models.builtin import resolve_model
    from platform.train.launcher import connect

    tokenizer = resolve_model("builtin:tiny-llama")
    connect(None)
    data = DataConfig(train=[str(folder)], on_bad_row="skip")
    started = time.perf_counter()
    stream, summary = build_stream(data, DataShape.BINARY, tokenizer, seed=0, objective="bco")
    built = time.perf_counter()
    consumed = 0
    for batch in stream.iter_batches(batch_size=1024, batch_format="numpy"):
        consumed += len(batch["label"])
    ended = time.perf_counter()
    store = ray.cluster_resources().get("object_store_memory", 0)
    ray.shutdown()
    return {
        "input_rows": summary.input_rows, "bad_rows": summary.bad_rows,
        "thumbs_up": summary.up_rows, "thumbs_down": summary.down_rows,
        "epoch_rows": consumed, "train_rows": summary.train_rows,
        "build_s": round(built - started, 1), "epoch_s": round(ended - built, 1),
        "rows_per_s": round(rows / (ended - started)),
        "build_rows_per_s": round(rows / (built - started)),
        "epoch_rows_per_s": round(consumed / (ended - built)),
        "object_store_gib": round(store / 2**30, 2), "fingerprint": summary.fingerprint,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--name", default="data_stream",
                        help="result file: bench/results/<name>.jsonl")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    with tempfile.TemporaryDirectory(prefix="data-stream-") as folder:
        started = time.perf_counter()
        write_shards(Path(folder), args.rows, args.shards)
        written = round(time.perf_counter() - started, 1)
        with PeakMemory() as memory:
            result = measure(Path(folder), args.rows)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                            capture_output=True, text=True).stdout.strip()
    result.update(name=args.name, rows=args.rows, shards=args.shards, write_s=written,
                  peak_rss_gib=round(memory.peak / 2**30, 2),
                  date=datetime.now(UTC).isoformat(timespec="seconds"), commit=commit,
                  cpus=psutil.cpu_count(),
                  memory_gib=round(psutil.virtual_memory().total / 2**30, 1))
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / f"{args.name}.jsonl").open("a") as results:
        results.write(json.dumps(result) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
