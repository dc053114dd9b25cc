"""``python -m platform.run objective=bco [recipe=NAME] [dotted.key=value ...]``

Trains with the objective on the recipe's model and data, through Ray Train and
DeepSpeed, logging to MLflow. With no argument it runs the embedded default: a small
instruct model and verifiable feedback data built offline on a local Ray cluster. With
``eval.benchmarks=...`` the trained policy is then evaluated into the same MLflow run
(``platform.evaluation.stage``).
"""

from __future__ import annotations

import logging
import sys

USAGE = """usage: python -m platform.run [objective=NAME[,NAME...]] [recipe=NAME|FILE.yaml] [key=value ...]
       python -m platform.run ... eval.benchmarks=NAME[,NAME...] eval.judge=hosted eval.judge.model_path=MODEL
       python -m platform.run --list-objectives
       python -m platform.run --help

Keys (key=default  description):
"""


def main(argv: list[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if any(word in ("-h", "--help") for word in words):
        from platform.config_loading import available_recipes, help_text

        print(USAGE + help_text() + f"\n\nRecipes: {', '.join(available_recipes())}")
        return 0
    if "--list-objectives" in words:
        return _list_objectives()

    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from platform.config_loading import ConfigError, load_config

    objectives = _objective_list(words)
    try:
        configs = [load_config(_with_objective(words, name)) for name in objectives] \
            if objectives else [load_config(words)]
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return _sweep(configs) if objectives else _train(configs[0])


def _objective_list(words: list[str]) -> list[str]:
    """The objectives of ``objective=a,b,c`` (a sweep); empty for a single objective."""
    from platform.sweep import split_objectives

    values = [word.partition("=")[2] for word in words if word.startswith("objective=")]
    return split_objectives(values[-1]) if values and "," in values[-1] else []


def _with_objective(words: list[str], name: str) -> list[str]:
    return [word for word in words if not word.startswith("objective=")] + [f"objective={name}"]


def _sweep(configs) -> int:
    from platform import tracking
    from platform.evaluate import print_outcome
    from platform.evaluation import stage
    from platform.sweep import run_sweep

    if not _eval_can_start(configs[0]):
        return 2
    result = run_sweep(configs)
    print(f"\nMLflow parent run id: {result.parent_run_id}")
    for name, run_id in result.child_run_ids.items():
        print(f"  {name:<10} {run_id}")
    for name, error in result.failures.items():
        print(f"  {name:<10} FAILED: {error}", file=sys.stderr)
    for name, outcome in result.evaluations.items():
        print(f"\n== evaluation of {name}")
        print_outcome(outcome)
    by_objective = {config.objective: config for config in configs}
    for name, error in result.eval_failures.items():
        run_id = result.child_run_ids[name]
        _report_eval_failure(error, run_id, result.model_dirs[name], stage.eval_config(
            by_objective[name], run_id, result.tracking_uri))
    print("to compare runs, " + tracking.run_url_hint(result.tracking_uri,
                                                      result.parent_run_id))
    return 1 if result.failures or result.eval_failures else 0


def _train(config) -> int:
    import yaml

    from platform import tracking
    from platform.evaluation import stage
    from platform.train.launcher import launch

    print("resolved configuration:\n" + yaml.safe_dump(config.model_dump(mode="json"),
                                                       sort_keys=False), flush=True)
    if not _eval_can_start(config):
        return 2
    try:
        result = launch(config)
    except KeyboardInterrupt:
        print("interrupted; the MLflow run is marked FAILED", file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"error: training failed: {_root_message(exc)}", file=sys.stderr)
        return 1
    print(f"\nMLflow run id: {result.run_id}")
    print(f"final policy: {result.model_dir}")
    print("to compare runs, " + tracking.run_url_hint(result.tracking_uri, result.run_id))
    return _evaluate(config, result) if stage.is_enabled(config) else 0


def _eval_can_start(config) -> bool:
    """Shows the eval stage and checks, before training, that it will be able to start."""
    import yaml

    from platform.evaluation import stage
    from platform.evaluation.eval_env import EvalEnvironmentError

    if not stage.is_enabled(config):
        return True
    print("evaluation after training:\n" + yaml.safe_dump(
        config.eval.model_dump(mode="json", exclude_defaults=True), sort_keys=False),
        flush=True)
    try:
        stage.check_before_training(config)
    except EvalEnvironmentError as exc:
        print(f"error: the eval stage could not run after training: {exc}", file=sys.stderr)
        return False
    return True


def _evaluate(config, result) -> int:
    """The eval stage; when it fails, the trained model stays and the retry is printed."""
    from platform.evaluate import print_outcome
    from platform.evaluation import stage
    from platform.evaluation.runner import evaluate

    settings = stage.eval_config(config, result.run_id, result.tracking_uri)
    try:
        outcome = evaluate(settings)
    except KeyboardInterrupt:
        _report_eval_failure("interrupted", result.run_id, result.model_dir, settings)
        return 130
    except Exception as exc:
        logging.getLogger(__name__).debug("evaluation failed", exc_info=True)
        _report_eval_failure(_root_message(exc), result.run_id, result.model_dir, settings)
        return 1
    print_outcome(outcome)
    return 0


def _report_eval_failure(error: str, run_id: str, model_dir: str, settings) -> None:
    from platform.evaluation import stage

    print(f"error: evaluation failed: {error}\n"
          f"training succeeded: MLflow run {run_id} keeps its metrics, and its model is "
          f"in {model_dir}. To evaluate it again, run from the repository root:\n"
          f"  {stage.retry_command(settings)}", file=sys.stderr)


def _root_message(exc: BaseException) -> str:
    """The innermost cause of an error raised through Ray's wrappers."""
    seen = exc
    while seen.__cause__ is not None:
        seen = seen.__cause__
    return f"{type(seen).__name__}: {seen}"


def _list_objectives() -> int:
    from platform import registry

    try:
        entries = registry.discover()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name in sorted(entries):
        entry = entries[name]
        try:
            cls = registry.load_class(name)
            detail = f"{cls.data_shape.value}, reference={'yes' if cls.needs_reference else 'no'}"
        except (ImportError, TypeError) as exc:
            detail = f"BROKEN: {exc}"
        print(f"{name:<10} {entry.target:<36} {entry.distribution} {entry.version}  ({detail})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
