"""Training throughput and per-worker peak memory across models, reference modes and ZeRO.

Each configuration is one ``python -m platform.run`` command in a subprocess with its own
MLflow store. The numbers come from the run's own metrics: ``train/tokens_per_s`` (global
tokens per second of each optimizer step; the median over the steps after the first, whose
time includes lazy set-up), ``memory/peak_worker_rss_gib`` (the largest worker's peak
resident set) and, for precomputed reference log-probs, ``reference/precompute_s`` (the
batch-inference pass on a cold cache, once per data and reference). One JSON line per
configuration goes to ``bench/results/train_throughput.jsonl``.

    .venv/bin/python -m bench.train_throughput                   # every configuration
    .venv/bin/python -m bench.train_throughput --models tiny --steps 6
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
MODELS = {"tiny": ["recipe=tiny"], "smollm2-135m": []}  # [] : the embedded default recipe


def measure(model: str, reference: str, zero: int, steps: int, folder: Path) -> dict:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    words = ["objective=bco", *MODELS[model], f"train.max_steps={steps}",
             f"train.zero_stage={zero}", f"model.reference_logps={reference}",
             f"model.reference_cache_dir={folder / 'cache'}", f"tracking.uri={uri}",
             f"train.output_dir={folder / 'out'}"]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "platform.run", *words], cwd=REPO,
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    run_id = next((line.split(":", 1)[1].strip() for line in done.stdout.splitlines()
                   if line.startswith("MLflow run id:")), None)
    result = {"model": model, "reference": reference, "zero_stage": zero, "steps": steps,
              "exit_code": done.returncode, "wall_s": round(wall, 1), "mlflow_run_id": run_id}
    if done.returncode != 0 or run_id is None:
        result["error"] = (done.stderr or done.stdout).splitlines()[-5:]
        return result
    client = MlflowClient(uri)

    def history(key: str) -> list[float]:
        return [m.value for m in sorted(client.get_metric_history(run_id, key),
                                        key=lambda m: m.step)]

    tokens = history("train/tokens_per_s")
    result["tokens_per_s"] = round(statistics.median(tokens[1:] or tokens), 1)
    result["peak_worker_rss_gib"] = round(history("memory/peak_worker_rss_gib")[-1], 2)
    precompute = history("reference/precompute_s")
    if precompute:
        result["precompute_s"] = round(precompute[-1], 1)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny,smollm2-135m",
                        help=f"comma-separated, of {sorted(MODELS)}")
    parser.add_argument("--references", default="live,precomputed")
    parser.add_argument("--zero-stages", default="0,3")
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per run")
    args = parser.parse_args()
    models = args.models.split(",")
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {sorted(MODELS)}")

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                            capture_output=True, text=True).stdout.strip()
    RESULTS.mkdir(parents=True, exist_ok=True)
    failed = 0
    for model, reference, zero in itertools.product(
            models, args.references.split(","), [int(z) for z in args.zero_stages.split(",")]):
        with tempfile.TemporaryDirectory(prefix="bench-") as folder:
            result = measure(model, reference, zero, args.steps, Path(folder))
        result.update(date=datetime.now(UTC).isoformat(timespec="seconds"), commit=commit,
                      cpus=psutil.cpu_count(),
                      load_average=round(psutil.getloadavg()[0], 2))
        failed += result["exit_code"] != 0
        with (RESULTS / "train_throughput.jsonl").open("a") as handle:
            handle.write(json.dumps(result) + "\n")
        print(json.dumps(result), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
