"""Trains one TRL trainer (BCO, KTO or DPO) as the benchmark specifies; runs in a TRL venv.

Usage: ``<trl venv>/bin/python trl_runner.py SPEC.json RESULT.json``. The spec holds the
shared setting (``bench/compare/settings.py``); the result holds per-step wall-clock stamps,
the real (non-padding) tokens of every step's policy sequences, and TRL's own logged
losses and rewards, so that the harness computes tokens per second exactly as it does for
the platform (tokens of the step's sequences over the step's time, the median over the
steps after the first).

This file imports TRL and the standard library only (see the package docstring).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

logger = logging.getLogger(__name__)


def token_count(inputs: dict) -> int:
    """Real tokens of the policy's sequences in one batch, whatever the trainer's layout."""
    for key in ("attention_mask", "completion_attention_mask"):
        if key in inputs:
            return int(inputs[key].sum())
    if "position_ids" in inputs:  # padding-free batches: one flat row, no padding at all
        return int(inputs["position_ids"].numel())
    raise KeyError(f"no attention mask in the batch (keys {sorted(inputs)}); cannot count "
                   "tokens. Extend token_count for this trainer's batch layout.")


def trainer_classes(name: str):
    """(trainer class, config class) of a TRL trainer by objective name."""
    if name == "bco":
        from trl.experimental.bco import BCOConfig, BCOTrainer

        return BCOTrainer, BCOConfig
    if name == "kto":
        from trl import KTOConfig, KTOTrainer

        return KTOTrainer, KTOConfig
    if name == "dpo":
        from trl import DPOConfig, DPOTrainer

        return DPOTrainer, DPOConfig
    raise ValueError(f"trainer {name!r} is not one of bco, kto, dpo.")


def counting_trainer(base: type) -> type:
    """``base`` with a count of each training step's real tokens."""

    class Counting(base):
        step_tokens: list[int]

        def training_step(self, model, inputs, *args, **kwargs):
            self.step_tokens.append(token_count(inputs))
            return super().training_step(model, inputs, *args, **kwargs)

    return Counting


def config_kwargs(spec: dict, config_class: type) -> dict:
    """The TrainingArguments of the spec, limited to what this TRL release accepts."""
    import dataclasses

    wanted = {
        "output_dir": spec["output_dir"], "max_steps": spec["steps"],
        "per_device_train_batch_size": spec["rows_per_step"], "gradient_accumulation_steps": 1,
        "learning_rate": spec["lr"], "lr_scheduler_type": "linear",
        "warmup_ratio": spec["warmup_ratio"], "weight_decay": 0.0, "adam_beta1": 0.9,
        "adam_beta2": 0.999, "adam_epsilon": 1e-8, "max_grad_norm": 1.0,
        "optim": "adamw_torch", "seed": spec["seed"], "data_seed": spec["seed"],
        "beta": spec["beta"], "max_length": spec["max_length"],
        "max_prompt_length": spec["max_prompt_length"],
        "max_completion_length": spec["max_completion_length"],
        "precompute_ref_log_probs": spec["reference"] == "precomputed",
        "logging_steps": 1, "report_to": "none", "save_strategy": "no", "use_cpu": True,
        "bf16": False, "fp16": False, "dataloader_num_workers": 0,
        "disable_tqdm": True, "remove_unused_columns": False,
    }
    accepted = {field.name for field in dataclasses.fields(config_class)}
    return {key: value for key, value in wanted.items() if key in accepted}


class StepClock:
    """A TrainerCallback (built lazily: transformers is imported inside) that stamps steps."""

    def __new__(cls):
        from transformers import TrainerCallback

        class Clock(TrainerCallback):
            def __init__(self) -> None:
                self.train_begin_s = 0.0
                self.step_end_s: list[float] = []
                self.logs: list[dict] = []

            def on_train_begin(self, args, state, control, **kwargs):
                self.train_begin_s = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                self.step_end_s.append(time.perf_counter())

            def on_log(self, args, state, control, logs=None, **kwargs):
                self.logs.append({"step": state.global_step, **(logs or {})})

        return Clock()


def train(spec: dict) -> dict:
    """Builds the trainer of the spec, trains, and returns the measurements."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec["seed"])
    rows = [json.loads(line) for line in Path(spec["data_path"]).read_text().splitlines()]
    trainer_class, config_class = trainer_classes(spec["trainer"])
    tokenizer = AutoTokenizer.from_pretrained(spec["model_path"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(spec["model_path"], dtype=torch.float32,
                                                 attn_implementation="sdpa")
    reference = AutoModelForCausalLM.from_pretrained(spec["model_path"], dtype=torch.float32,
                                                     attn_implementation="sdpa")
    clock = StepClock()
    trainer = counting_trainer(trainer_class)(
        model=model, ref_model=reference,
        args=config_class(**config_kwargs(spec, config_class)),
        train_dataset=Dataset.from_list(rows), processing_class=tokenizer, callbacks=[clock])
    trainer.step_tokens = []
    ready = time.perf_counter()
    trainer.train()
    finished = time.perf_counter()
    return {"setup_s": ready - started, "train_s": finished - ready,
            "train_begin_s": clock.train_begin_s, "step_end_s": clock.step_end_s,
            "step_tokens": trainer.step_tokens, "logs": clock.logs,
            "trl_version": __import__("trl").__version__,
            "transformers_version": __import__("transformers").__version__,
            "torch_version": torch.__version__, "threads": torch.get_num_threads()}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: trl_runner.py SPEC.json RESULT.json", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    spec = json.loads(Path(argv[0]).read_text())
    result = train(spec)
    Path(argv[1]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
