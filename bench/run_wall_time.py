"""Wall time and peak memory of whole training runs, as a user starts them.

Runs ``python -m platform.run`` with the given words in a subprocess, samples the resident
memory of its whole process tree (the driver, the local Ray cluster it starts and every
Ray worker) twice a second, and appends one JSON line per run to ``bench/results/``.

    .venv/bin/python -m bench.run_wall_time --name tiny -- objective=bco recipe=tiny
    .venv/bin/python -m bench.run_wall_time --name default -- objective=bco
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import psutil

from bench.process_tree import measured

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def run(words: list[str]) -> dict:
    done = measured([sys.executable, "-m", "platform.run", *words], REPO)
    output = done.pop("output")
    run_id = next((line.split(":", 1)[1].strip() for line in output.splitlines()
                   if line.startswith("MLflow run id:")), None)
    return {"words": words, **done, "mlflow_run_id": run_id, "tail": output.splitlines()[-3:]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="result file: bench/results/<name>.jsonl")
    parser.add_argument("words", nargs="*", help="arguments of python -m platform.run")
    args = parser.parse_args()

    result = run(args.words)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                            capture_output=True, text=True).stdout.strip()
    result.update(name=args.name, date=datetime.now(UTC).isoformat(timespec="seconds"),
                  commit=commit,
                  cpus=psutil.cpu_count(), memory_gib=round(
                      psutil.virtual_memory().total / 2**30, 1))
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / f"{args.name}.jsonl").open("a") as handle:
        handle.write(json.dumps(result) + "\n")
    print(json.dumps(result, indent=1))
    return result["exit_code"]


if __name__ == "__main__":
    sys.exit(main())
