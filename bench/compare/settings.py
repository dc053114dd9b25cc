"""What both systems are given: one set of hyperparameters, models, data and environments.

A :class:`Setting` is written once and turned into each system's own options
(``platform_words`` for ``python -m platform.run``, ``trl_spec`` for ``trl_runner.py``), so
a value cannot differ between the two by a typo. The data is the platform's built-in
arithmetic feedback; TRL receives the same rows in its conversational format, so that both
render them with the model's chat template.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results"
TRL_RUNNER = Path(__file__).resolve().parent / "trl_runner.py"
TRL_PARITY = Path(__file__).resolve().parent / "trl_parity.py"

# TRL 1.13.0 is the last release with the BCO trainer (trl.experimental.bco); 1.14.0
# removed it. KTO and DPO come from the current release.
TRL_VENVS = {"bco": REPO / ".venv-trl-bco", "kto": REPO / ".venv-trl", "dpo": REPO / ".venv-trl"}
SETUP_HINT = "make setup-trl"

MODELS = {"tiny": "builtin:tiny-llama", "smollm2-135m": "builtin:smollm2-135m-instruct"}
OBJECTIVES = ("bco", "kto", "dpo")
# The platform's data name per objective; DPO needs preference pairs of the same questions.
DATASETS = {"bco": "builtin:arithmetic", "kto": "builtin:arithmetic",
            "dpo": "builtin:arithmetic-pairs", "bce": "builtin:arithmetic"}


@dataclass(frozen=True)
class Setting:
    """One configuration that both systems train with."""

    objective: str  # bco, kto or dpo
    model: str  # a key of MODELS
    steps: int = 8
    rows_per_step: int = 16  # global batch: the platform splits it over its workers
    lr: float = 1.0e-4
    beta: float = 0.1
    seed: int = 42
    warmup_ratio: float = 0.1
    max_length: int = 128
    max_prompt_length: int = 96
    max_completion_length: int = 32
    reference: str = "live"  # live or precomputed reference log-probs

    def check(self) -> None:
        """Refuses values that one of the two systems cannot take, before anything runs."""
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective {self.objective!r} is not benchmarked; choose one of "
                             f"{', '.join(OBJECTIVES)}.")
        if self.model not in MODELS:
            raise ValueError(f"model {self.model!r} is unknown; choose one of "
                             f"{', '.join(MODELS)}.")
        if self.reference not in ("live", "precomputed"):
            raise ValueError(f"reference {self.reference!r} is not accepted; use live or "
                             "precomputed.")
        if self.steps < 1 or self.rows_per_step < 2:
            raise ValueError(f"steps ({self.steps}) must be at least 1 and rows_per_step "
                             f"({self.rows_per_step}) at least 2 (KTO needs two rows).")

    @property
    def label(self) -> str:
        return f"{self.objective}/{self.model}/{self.reference}"


def platform_words(setting: Setting, num_workers: int, folder: Path) -> list[str]:
    """The ``python -m platform.run`` words of ``setting``; outputs go under ``folder``."""
    if setting.rows_per_step % num_workers:
        raise ValueError(f"rows_per_step {setting.rows_per_step} does not split evenly over "
                         f"{num_workers} workers; pick a multiple of {num_workers}.")
    return [f"objective={setting.objective}", "recipe=tiny",
            f"model.name={MODELS[setting.model]}", f"data.train=[{DATASETS[setting.objective]}]",
            "data.balance=none",  # TRL does not rebalance: both see the same rows
            f"data.max_length={setting.max_length}",
            f"data.max_prompt_length={setting.max_prompt_length}",
            f"data.max_completion_length={setting.max_completion_length}",
            f"train.max_steps={setting.steps}",
            f"train.micro_batch_size={setting.rows_per_step // num_workers}",
            f"train.lr={setting.lr}", f"train.warmup_ratio={setting.warmup_ratio}",
            f"train.seed={setting.seed}", f"loss.beta={setting.beta}",
            f"resources.num_workers={num_workers}",
            f"model.reference_logps={setting.reference}",
            f"model.reference_cache_dir={folder / 'reference_cache'}",
            f"tracking.uri=sqlite:///{folder / 'mlflow.db'}",
            f"train.output_dir={folder / 'out'}"]


def trl_spec(setting: Setting, model_path: str, data_path: Path, folder: Path,
             threads: int) -> dict:
    """The JSON options of ``trl_runner.py`` for ``setting``."""
    return {**asdict(setting), "trainer": setting.objective, "model_path": model_path,
            "data_path": str(data_path), "output_dir": str(folder / "trl_out"),
            "threads": threads}


def trl_python(objective: str) -> Path:
    """The interpreter of the TRL environment that holds ``objective``'s trainer."""
    venv = TRL_VENVS["bco" if objective in ("bco", "bce") else objective]
    python = venv / "bin" / "python"
    if not python.exists():
        raise FileNotFoundError(f"{python} does not exist: the TRL environment for "
                                f"{objective} is not set up. Run `{SETUP_HINT}` first.")
    return python


def resolve_model_path(model: str) -> str:
    """The local folder of ``model`` (built by the platform on first use)."""
    from platform.models.builtin import resolve_model

    return resolve_model(MODELS[model])


def conversational_rows(objective: str) -> list[dict]:
    """The platform's built-in rows for ``objective`` in TRL's conversational format."""
    from platform.data.synthetic import materialize_builtin_dataset

    path = materialize_builtin_dataset(DATASETS[objective], "train")
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        converted = {"prompt": [{"role": "user", "content": row["prompt"]}]}
        for name in ("completion", "chosen", "rejected"):
            if name in row:
                converted[name] = [{"role": "assistant", "content": row[name]}]
        if "label" in row:
            converted["label"] = bool(row["label"])
        rows.append(converted)
    return rows


def write_trl_data(objective: str, folder: Path) -> Path:
    """Writes the conversational rows of ``objective`` as JSON Lines; returns the file."""
    path = folder / f"{objective}.jsonl"
    with path.open("w", encoding="utf-8") as stream:
        for row in conversational_rows(objective):
            stream.write(json.dumps(row) + "\n")
    return path
