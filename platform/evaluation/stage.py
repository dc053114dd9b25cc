"""The ``eval`` stage of ``platform.run``: the trained policy is evaluated after training.

``python -m platform.run ... eval.benchmarks=pairwise,mt_bench eval.judge=hosted
eval.judge.model_path=<model>`` trains, then runs ``platform.evaluate`` with
``model=<the training run's id>``: the run's model folder is evaluated and the scores,
answers, judgments and judge identity go to the training run itself. Unless
``eval.pairwise.*`` says otherwise, the pairwise references are the test split of the
training data (``data.train``, ``data.test_fraction``, ``data.split_seed``).

A failed evaluation leaves the training run and its model as they are;
:func:`retry_command` is the ``platform.evaluate`` command that evaluates them again.
"""

from __future__ import annotations

import json
import logging
import shlex
from typing import TYPE_CHECKING, Any

from platform.evaluation import eval_env
from platform.evaluation.settings import (
    BenchmarkSettings,
    EvalConfig,
    PairwiseSettings,
    TrackingSettings,
)
from platform.models.builtin import BUILTIN_PREFIX

if TYPE_CHECKING:
    from platform.config import RunConfig
    from platform.evaluation.runner import EvalOutcome

logger = logging.getLogger(__name__)


def is_enabled(config: RunConfig) -> bool:
    return bool(config.eval.benchmarks)


def check_before_training(config: RunConfig) -> None:
    """Raises before any training when the evaluation could not start after it."""
    stage = config.eval
    if stage.generation.backend == "vllm" or stage.judge.kind == "hosted":
        eval_env.check_eval_python(eval_env.eval_python(stage.eval_python))


def eval_config(config: RunConfig, run_id: str, tracking_uri: str) -> EvalConfig:
    """The evaluation of run ``run_id``'s model, logged to that run."""
    settings = {name: getattr(config.eval, name) for name in BenchmarkSettings.model_fields}
    settings["pairwise"] = _pairwise_settings(config)
    return EvalConfig(**settings, model=run_id, ray_address=config.resources.ray_address,
                      tracking=TrackingSettings(uri=tracking_uri))


def _pairwise_settings(config: RunConfig) -> PairwiseSettings:
    """``eval.pairwise.*`` where given, else the training data and its test split."""
    data = config.data
    inherited = {"data": data.train, "test_fraction": data.test_fraction,
                 "split_seed": data.split_seed, "format": data.format}
    settings = PairwiseSettings(**{**inherited,
                                   **config.eval.pairwise.model_dump(exclude_unset=True)})
    if "pairwise" in config.eval.benchmarks and settings.test_fraction == 0 and any(
            not source.startswith(BUILTIN_PREFIX) for source in settings.data):
        logger.warning(
            "pairwise references are the rows of %s themselves: with "
            "data.test_fraction=0 no test split was held out, so the win rate is measured "
            "on training prompts. Set data.test_fraction, or eval.pairwise.data to "
            "held-out files.", settings.data)
    return settings


def evaluate_trained_model(config: RunConfig, run_id: str, tracking_uri: str
                           ) -> EvalOutcome:
    """Runs the configured benchmarks on run ``run_id``'s model; results go to that run."""
    from platform.evaluation.runner import evaluate

    settings = eval_config(config, run_id, tracking_uri)
    logger.info("evaluating the policy of run %s on %s", run_id, ", ".join(settings.benchmarks))
    return evaluate(settings)


def retry_command(settings: EvalConfig) -> str:
    """The ``platform.evaluate`` command line that runs exactly this evaluation."""
    values = settings.model_dump(mode="json", exclude_defaults=True)
    words = [f"model={values.pop('model')}"] + [
        f"{key}={_word_value(key, value)}" for key, value in _dotted(values)
        if value is not None]
    return shlex.join(["python", "-m", "platform.evaluate", *words])


def _dotted(values: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items = []
    for key, value in values.items():
        if isinstance(value, dict):
            items.extend(_dotted(value, f"{prefix}{key}."))
        else:
            items.append((f"{prefix}{key}", value))
    return items


def _word_value(key: str, value: Any) -> str:
    """A value as ``platform.evaluate`` reads it back (YAML, text fields as typed)."""
    if key == "benchmarks":
        return ",".join(value)
    if isinstance(value, str):
        return value
    return json.dumps(value)  # lists as YAML flow sequences, true/false, numbers
