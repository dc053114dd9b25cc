"""A user's raw DeepSpeed JSON, merged over the config generated from ``train.*``.

The file wins on every key it sets, except the ones the trainer must own: the batch sizes
decide how the data stream is cut into micro-batches and the learning-rate schedule is
:func:`platform.train.engine.lr_factor`, so those come from ``train.*`` keys. A value of
``"auto"`` (as in configs written for Hugging Face's Trainer) means "leave it to the
generated config" and is dropped.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

# key -> the train.* key that sets it
OWNED_KEYS = {
    "train_micro_batch_size_per_gpu": "train.micro_batch_size",
    "gradient_accumulation_steps": "train.grad_accum_steps",
    "train_batch_size": "train.micro_batch_size and train.grad_accum_steps",
    "scheduler": "train.lr_schedule and train.warmup_ratio",
}


def read_override(path: str) -> dict[str, Any]:
    """The JSON object in ``path``, checked; raises ValueError saying what is wrong."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(
            f"train.deepspeed_config: no such file {path!r}. Give the path of a DeepSpeed "
            "JSON config file (relative paths are read from the working directory)."
        )
    try:
        override = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"train.deepspeed_config: {path!r} is not valid JSON ({exc}). Fix the file."
        ) from None
    if not isinstance(override, dict):
        raise ValueError(
            f"train.deepspeed_config: {path!r} holds a {type(override).__name__}, not a JSON "
            "object of DeepSpeed settings."
        )
    owned = {key: OWNED_KEYS[key] for key in override
             if key in OWNED_KEYS and override[key] != "auto"}
    if owned:
        details = "; ".join(f"{key} (set {where})" for key, where in owned.items())
        raise ValueError(
            f"train.deepspeed_config: {path!r} sets keys the trainer owns: {details}. Remove "
            "them from the file (or set them to \"auto\") and use the train.* keys instead."
        )
    return override


def merge(generated: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``generated`` with ``override`` merged in recursively; ``"auto"`` values skipped."""
    merged = copy.deepcopy(generated)
    for key, value in override.items():
        if value == "auto":
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
