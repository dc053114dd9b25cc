"""Before and after of the scoring changes: full logits versus the output layer on scored
tokens only (``platform/train/scoring.py``), and padded, packed or shared-prompt rows
(``platform/train/layout.py``).

One process, one thread (as one training worker has on this machine), the real data of a
run (the built-in arithmetic feedback, binary rows or preference pairs, rendered with the
model's chat template and tokenized as the pipeline does) in micro-batches of the run's
size; a pair is its chosen and its rejected sequence. Each variant times a
policy forward and backward plus a reference forward without gradient (what a worker
computes per micro-batch with a live reference), over the same batches, alternating the
variants each round so that background load meets them alike. Tokens per second counts
real tokens (padding excluded), as ``train/tokens_per_s`` does. One JSON line per variant
goes to ``bench/results/scoring_paths.jsonl``.

    .venv/bin/python -m bench.scoring_paths                        # both models, both data
    .venv/bin/python -m bench.scoring_paths --models tiny --data pairs --rounds 3
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
MODELS = {"tiny": "builtin:tiny-llama", "smollm2-135m": "builtin:smollm2-135m-instruct"}
DATA = {"binary": "builtin:arithmetic", "pairs": "builtin:arithmetic-pairs"}
# (label, layout, output layer on scored tokens only); the first is the path before both.
VARIANTS = [("padded, full logits", "padded", False), ("padded, scored logits", "padded", True),
            ("packed, full logits", "packed", False), ("packed, scored logits", "packed", True),
            ("shared, scored logits", "shared", True)]


def tokenized_rows(model_path: str, data: str, count: int) -> list[tuple[np.ndarray, int]]:
    """(token ids, prompt length) of the first ``count`` sequences of ``data``: a binary
    row gives one, a pair two in a row (chosen, rejected)."""
    from platform.data.synthetic import materialize_builtin_dataset
    from platform.data.tokenize import LengthLimits, encode_example, load_tokenizer

    tokenizer = load_tokenizer(model_path)
    limits = LengthLimits(max_length=2048, max_prompt_length=1536, max_completion_length=512)
    lines = materialize_builtin_dataset(DATA[data]).read_text().splitlines()
    rows = []
    for line in lines:
        row = json.loads(line)
        for name in ("completion", "chosen", "rejected"):
            if name not in row:
                continue
            ids, prompt_length = encode_example(tokenizer, row["prompt"], row[name], limits)
            rows.append((np.asarray(ids), prompt_length))
        if len(rows) >= count:
            return rows[:count]
    return rows


def time_variant(policy, reference, batches, layout: str) -> tuple[float, int]:
    """Seconds and real tokens of one pass over ``batches``."""
    from platform.train.layout import layout_sequences
    from platform.train.scoring import completion_logps

    seconds, tokens = 0.0, 0
    for rows in batches:
        started = time.perf_counter()
        batch = layout_sequences([ids for ids, _ in rows], np.array([p for _, p in rows]),
                                 pad_token_id=0, layout=layout)
        logps, _ = completion_logps(policy, batch)
        with torch.no_grad():
            completion_logps(reference, batch)
        logps.sum().backward()
        seconds += time.perf_counter() - started
        tokens += batch.num_tokens
    policy.zero_grad(set_to_none=True)
    return seconds, tokens


def measure(model: str, data: str, batch_size: int, batches: int,
            rounds: int) -> list[dict]:
    from platform.models.builtin import resolve_model
    from platform.models.loading import load_causal_lm
    from platform.train.scoring import TokenScorer

    path = resolve_model(MODELS[model])
    rows = tokenized_rows(path, data, batch_size * batches)
    grouped = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    causal_policy, causal_reference = load_causal_lm(path, False), load_causal_lm(path, False)
    causal_reference.eval().requires_grad_(False)
    times: dict[str, list[float]] = {label: [] for label, _, _ in VARIANTS}
    tokens = {}
    time_variant(TokenScorer(causal_policy), TokenScorer(causal_reference), grouped[:1], "padded")
    for round_index in range(rounds):
        order = VARIANTS if round_index % 2 == 0 else VARIANTS[::-1]
        for label, layout, scored in order:
            seconds, tokens[label] = time_variant(TokenScorer(causal_policy, scored),
                                                  TokenScorer(causal_reference, scored),
                                                  grouped, layout)
            times[label].append(seconds)
            print(f"{model} {data} round {round_index + 1}: {label}: {tokens[label] / seconds:.0f} "
                  "tokens/s", flush=True)
    baseline = statistics.median(times[VARIANTS[0][0]])
    return [{"model": model, "data": data, "variant": label, "batch_size": batch_size, "batches": batches,
             "rounds": rounds, "tokens": tokens[label],
             "tokens_per_s": round(tokens[label] / statistics.median(times[label]), 1),
             "speedup": round(baseline / statistics.median(times[label]), 3)}
            for label, _, _ in VARIANTS]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny,smollm2-135m")
    parser.add_argument("--data", default="binary,pairs", help=f"of {sorted(DATA)}")
    parser.add_argument("--batch-size", type=int, default=8,
                        help="sequences per micro-batch (a pair is two)")
    parser.add_argument("--batches", type=int, default=6, help="micro-batches per pass")
    parser.add_argument("--rounds", type=int, default=3, help="passes per variant")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                            capture_output=True, text=True).stdout.strip()
    RESULTS.mkdir(parents=True, exist_ok=True)
    for model, data in itertools.product(args.models.split(","), args.data.split(",")):
        if model not in MODELS or data not in DATA:
            parser.error(f"unknown model {model!r} or data {data!r}; choose from "
                         f"{sorted(MODELS)} and {sorted(DATA)}")
        for record in measure(model, data, args.batch_size, args.batches, args.rounds):
            record.update(date=datetime.now(UTC).isoformat(timespec="seconds"), commit=commit,
                          threads=1, load_average=round(os.getloadavg()[0], 2))
            with (RESULTS / "scoring_paths.jsonl").open("a") as handle:
                handle.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
