"""``python -m platform.evaluate model=<folder | MLflow run id> judge=... [key=value ...]``

Runs the benchmarks of SPEC §5 (pairwise win rate, MT-Bench, AlpacaEval 2.0, Arena-Hard
v0.1) on a model and logs the scores, answers and judgments to the model's MLflow run.
See docs/evaluation.md.
"""

from __future__ import annotations

import logging
import math
import sys

USAGE = """usage: python -m platform.evaluate model=<folder|run id|builtin:name> judge=hosted \\
           judge.model_path=<model> [benchmarks=pairwise,mt_bench,...] [limit=N] [key=value ...]
       python -m platform.evaluate model=... judge.base_url=<url/v1> judge.model=<name> \\
           judge.api_key_env=<VAR> [...]

Keys (key=default  description):
"""


def main(argv: list[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if not words or any(word in ("-h", "--help") for word in words):
        from platform.evaluation.settings import help_text

        print(USAGE + help_text())
        return 0 if words else 2
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from platform.evaluation.eval_env import EvalEnvironmentError
    from platform.evaluation.settings import EvalSettingsError, load_settings

    try:
        config = load_settings(words)
    except EvalSettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from platform.evaluation.runner import evaluate

    try:
        outcome = evaluate(config)
    except (EvalEnvironmentError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # Ray wraps worker errors; show the cause, keep the trace
        logging.getLogger(__name__).debug("evaluation failed", exc_info=True)
        print(f"error: evaluation failed: {_root_cause(error)}", file=sys.stderr)
        return 1
    print_outcome(outcome)
    return 0


def _root_cause(error: BaseException) -> str:
    while error.__cause__ is not None:
        error = error.__cause__
    return f"{type(error).__name__}: {error}"


def print_outcome(outcome) -> None:
    from platform import tracking

    for result in outcome.results:
        counts = result.counts()
        print(f"\n{result.name}: {counts['n_questions']} question(s), "
              f"{counts['n_judgments']} judgment(s): {counts['n_scored']} scored, "
              f"{counts['n_unparseable']} unparseable, {counts['n_failed']} failed")
        for key, value in sorted(result.metrics.items()):
            shown = "NaN" if math.isnan(value) else f"{value:.4g}"
            print(f"  {key:<40} {shown}")
        for note in result.notes:
            print(f"  note: {note}")
    where = "new run" if outcome.new_run else "the model's run"
    print(f"\nresults logged to {where} {outcome.run_id}")
    print("to see them, " + tracking.run_url_hint(outcome.tracking_uri, outcome.run_id))


if __name__ == "__main__":
    sys.exit(main())
