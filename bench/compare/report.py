"""The comparison's table and plot, from the JSON lines of one harness invocation.

    .venv/bin/python -m bench.compare.report                       # the latest invocation
    .venv/bin/python -m bench.compare.report --session 2026-12-04T05:30:00+00:00

Each configuration's row holds medians over its repeats, per system, and the ratio of the
platform to TRL (tokens per second: higher is better; time and memory: lower is better).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from collections import defaultdict
from pathlib import Path

from bench.compare.flops import utilisation
from bench.compare.runs import steady_tokens_per_s
from bench.compare.settings import REPO, RESULTS

logger = logging.getLogger(__name__)

DEFAULT_RESULTS = RESULTS / "compare.jsonl"
DEFAULT_PLOT = REPO / "bench" / "compare.png"


def load_session(path: Path, session: str | None = None) -> list[dict]:
    """The run records of ``session`` (default: the last one in the file)."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; run `python -m bench.compare` first.")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    runs = [record for record in records if record.get("kind") == "run"]
    if not runs:
        raise ValueError(f"{path} holds no run records; run `python -m bench.compare` first.")
    wanted = session or runs[-1]["session"]
    chosen = [record for record in runs if record["session"] == wanted]
    if not chosen:
        sessions = sorted({record["session"] for record in runs})
        raise ValueError(f"no runs of session {wanted!r} in {path}; it holds {sessions}.")
    return chosen


def _median(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def summarize(records: list[dict]) -> list[dict]:
    """One row per (objective, model, reference): medians per system and the ratios."""
    groups: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        if record["exit_code"] == 0:
            key = (record["objective"], record["model"], record["reference"])
            groups[key][record["system"]].append(record)
    peak = max(record.get("matmul_flops_per_s") or 0.0 for record in records) or None
    rows = []
    for (objective, model, reference), systems in groups.items():
        row = {"objective": objective, "model": model, "reference": reference}
        for system, runs in systems.items():
            tokens_per_s = _median([steady_tokens_per_s(run) for run in runs])
            per_token = runs[0].get("flops_per_token")
            row[system] = {
                "repeats": len(runs),
                "tokens_per_s": tokens_per_s,
                "steps_s": _median([run.get("steps_s") for run in runs]),
                "wall_s": _median([run["wall_s"] for run in runs]),
                "peak_rss_gib": _median([run["peak_rss_gib"] for run in runs]),
                "peak_pss_gib": _median([run.get("peak_pss_gib") for run in runs]),
                "mfu": (utilisation(tokens_per_s, per_token, peak)
                        if tokens_per_s and per_token and peak else None),
                "load_average_1m": _median([run.get("load_average_1m") for run in runs]),
            }
        if "platform" in row and "trl" in row:
            platform, trl = row["platform"], row["trl"]
            row["ratio"] = {key: _ratio(platform[key], trl[key])
                            for key in ("tokens_per_s", "steps_s", "peak_rss_gib",
                                        "peak_pss_gib", "wall_s")}
        row["matmul_peak_flops_per_s"] = peak
        rows.append(row)
    return rows


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _cell(value: float | None, pattern: str) -> str:
    return "n/a" if value is None else pattern.format(value)


def markdown_table(rows: list[dict]) -> str:
    """The README's table: one line per configuration."""
    lines = ["| objective | model | reference | platform tokens/s | TRL tokens/s | ratio "
             "| steps 2..N, platform / TRL | peak RSS, platform / TRL "
             "| peak PSS, platform / TRL | MFU, platform / TRL | load avg |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        platform, trl = row.get("platform", {}), row.get("trl", {})
        ratio = row.get("ratio", {})
        lines.append(
            f"| {row['objective']} | {row['model']} | {row['reference']} "
            f"| {_cell(platform.get('tokens_per_s'), '{:,.0f}')} "
            f"| {_cell(trl.get('tokens_per_s'), '{:,.0f}')} "
            f"| {_cell(ratio.get('tokens_per_s'), '{:.2f}x')} "
            f"| {_cell(platform.get('steps_s'), '{:.1f} s')} / "
            f"{_cell(trl.get('steps_s'), '{:.1f} s')} "
            f"| {_cell(platform.get('peak_rss_gib'), '{:.2f}')} / "
            f"{_cell(trl.get('peak_rss_gib'), '{:.2f}')} GiB "
            f"| {_cell(platform.get('peak_pss_gib'), '{:.2f}')} / "
            f"{_cell(trl.get('peak_pss_gib'), '{:.2f}')} GiB "
            f"| {_cell(_percent(platform.get('mfu')), '{:.1f} %')} / "
            f"{_cell(_percent(trl.get('mfu')), '{:.1f} %')} "
            f"| {_cell(_median([platform.get('load_average_1m'), trl.get('load_average_1m')]), '{:.1f}')} |")
    return "\n".join(lines)


def _percent(value: float | None) -> float | None:
    return None if value is None else 100 * value


def plot(rows: list[dict], path: Path) -> None:
    """Grouped bars: training tokens per second by configuration and system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{row['objective']}\n{row['model']}\n{row['reference']}" for row in rows]
    positions = range(len(rows))
    figure, axes = plt.subplots(figsize=(max(6.0, 1.6 * len(rows) + 2), 4.5))
    for offset, (system, name) in zip((-0.2, 0.2), (("platform", "bco-platform"),
                                                    ("trl", "TRL")), strict=True):
        values = [row.get(system, {}).get("tokens_per_s") or 0.0 for row in rows]
        bars = axes.bar([p + offset for p in positions], values, width=0.4, label=name)
        axes.bar_label(bars, fmt="%.0f", fontsize=8)
    axes.set_xticks(list(positions), labels, fontsize=8)
    axes.set_ylabel("training tokens per second (median)")
    axes.set_title("Training throughput, same model, data and hyperparameters")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--session", default=None, help="default: the latest in the file")
    parser.add_argument("--plot", type=Path, default=DEFAULT_PLOT)
    args = parser.parse_args()
    rows = summarize(load_session(args.results, args.session))
    print(markdown_table(rows))
    plot(rows, args.plot)
    print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
