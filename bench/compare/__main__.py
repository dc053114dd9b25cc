"""Trains this platform and TRL side by side on this machine and writes the comparison.

    .venv/bin/python -m bench.compare                                  # tiny model, 2 repeats
    .venv/bin/python -m bench.compare --models tiny,smollm2-135m --repeats 3
    .venv/bin/python -m bench.compare --steps 1 --repeats 1 --objectives bco   # a smoke run

Per configuration (objective x model x reference mode) and repeat, the platform runs, then
TRL (A B A B ...), so both meet the same background load. Every run appends one JSON line
to ``bench/results/compare.jsonl`` as soon as it ends; the end prints the table of the
invocation and writes the plot (``bench/compare/report.py``), and, unless ``--no-parity``,
the loss-parity check (``bench/compare/parity.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import psutil

from bench.compare import flops, report, runs, settings

logger = logging.getLogger(__name__)


def machine() -> dict:
    """What the numbers depend on: cores, memory, CPU model, versions."""
    import torch

    cpu_model = next((line.split(":", 1)[1].strip()
                      for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "unknown")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=settings.REPO,
                            capture_output=True, text=True).stdout.strip()
    return {"cpus": psutil.cpu_count(), "cpu_model": cpu_model,
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "torch": torch.__version__, "python": sys.version.split()[0], "commit": commit}


def with_utilisation(record: dict, setting: settings.Setting, model_path: str) -> dict:
    """Adds the steady tokens per second and the model FLOPs per token of the run.

    The utilisation itself is computed by the report, against the highest matmul rate
    measured in the invocation (the machine's peak least disturbed by other load).
    """
    tokens_per_s = runs.steady_tokens_per_s(record)
    if tokens_per_s is None:
        return record
    sequence = flops.mean_sequence_tokens(setting.objective, model_path, setting.max_length)
    per_token = flops.step_flops_per_token(flops.model_shape(model_path), sequence,
                                           setting.objective, setting.reference)
    record.update(tokens_per_s=tokens_per_s, flops_per_token=per_token,
                  mean_sequence_tokens=sequence)
    return record


def run_all(args: argparse.Namespace, results: Path, session: str) -> int:
    """The alternating runs; returns how many failed."""
    common = {"kind": "run", "session": session, **machine()}
    failed = 0
    for model in args.models:
        model_path = settings.resolve_model_path(model)
        for objective in args.objectives:
            for reference in args.references:
                setting = settings.Setting(objective=objective, model=model,
                                           steps=args.steps, reference=reference)
                setting.check()
                for repeat in range(args.repeats):
                    for system in ("platform", "trl"):
                        failed += not run_one(args, setting, system, model_path, results,
                                              {**common, "repeat": repeat})
    return failed


def run_one(args: argparse.Namespace, setting: settings.Setting, system: str,
            model_path: str, results: Path, common: dict) -> bool:
    """One measured run, appended to ``results``; returns whether it succeeded."""
    # Measured right before each run: the machine's rate under the load the run will meet.
    peak = flops.matmul_flops_per_s(rounds=2, threads=psutil.cpu_count())
    logger.info("%s %s, repeat %d (matmul %.1f GFLOP/s)", system, setting.label,
                common["repeat"] + 1, peak / 1e9)
    record = (runs.run_platform(setting, args.workers, args.timeout_s)
              if system == "platform" else runs.run_trl(setting, args.threads, args.timeout_s))
    record = with_utilisation(record, setting, model_path)
    record.update(common, matmul_flops_per_s=peak,
                  date=datetime.now(UTC).isoformat(timespec="seconds"))
    with results.open("a") as stream:
        stream.write(json.dumps(record) + "\n")
    return record["exit_code"] == 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny", help=f"comma-separated, of {list(settings.MODELS)}")
    parser.add_argument("--objectives", default=",".join(settings.OBJECTIVES))
    parser.add_argument("--references", default="live", help="live, precomputed or both")
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per run")
    parser.add_argument("--repeats", type=int, default=2, help="runs per system (A B A B)")
    parser.add_argument("--workers", type=int, default=2, help="the platform's Ray workers")
    parser.add_argument("--threads", type=int, default=psutil.cpu_count(),
                        help="TRL's torch threads (one process)")
    parser.add_argument("--timeout-s", type=float, default=1800.0, help="per run")
    parser.add_argument("--results", type=Path, default=report.DEFAULT_RESULTS)
    parser.add_argument("--plot", type=Path, default=report.DEFAULT_PLOT)
    parser.add_argument("--no-parity", action="store_true", help="skip the loss-parity check")
    args = parser.parse_args(argv)
    for name, known in (("models", settings.MODELS), ("objectives", settings.OBJECTIVES),
                        ("references", ("live", "precomputed"))):
        values = getattr(args, name).split(",")
        unknown = sorted(set(values) - set(known))
        if unknown:
            parser.error(f"--{name}: unknown {unknown}; choose from {list(known)}")
        setattr(args, name, values)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    session = datetime.now(UTC).isoformat(timespec="seconds")
    failed = run_all(args, args.results, session)
    rows = report.summarize(report.load_session(args.results, session))
    print(report.markdown_table(rows))
    report.plot(rows, args.plot)
    print(f"session {session}: {args.results}, plot {args.plot}")
    if not args.no_parity:
        from bench.compare import parity

        failed += parity.main(["--results", str(args.results.with_name("compare_parity.jsonl"))])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
