"""TRL's side of the loss-parity check; runs in a TRL venv (see ``bench/compare/parity.py``).

Usage: ``<trl venv>/bin/python trl_parity.py SPEC.json RESULT.json``. The spec names the
objective (``dpo``, ``bce`` or ``bco``), the policy and reference folders and the rows. The
trainer is built as for training and tokenizes the rows itself; consecutive batches of
``rows_per_step`` rows, in the data's order, go through its own collator and loss code at
the initial weights (no optimizer step in between). For each batch the result holds the
token ids TRL built (so the platform scores exactly the same sequences), the loss, the
mean rewards of both classes and, for BCO, TRL's delta.

``bce`` is TRL's BCO trainer with its running delta held at 0: with no shift, its loss is
binary cross-entropy on the implicit reward, which is the platform's ``bce``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from trl_runner import config_kwargs, trainer_classes


def build_trainer(spec: dict):
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(spec["seed"])
    trainer_class, config_class = trainer_classes("bco" if spec["objective"] == "bce"
                                                  else spec["objective"])
    tokenizer = AutoTokenizer.from_pretrained(spec["model_path"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    models = [AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32,
                                                   attn_implementation="sdpa")
              for path in (spec["model_path"], spec["reference_path"])]
    options = {**spec, "steps": 1, "output_dir": spec["output_dir"]}
    return trainer_class(model=models[0], ref_model=models[1],
                         args=config_class(**config_kwargs(options, config_class)),
                         train_dataset=Dataset.from_list(spec["rows"]),
                         processing_class=tokenizer)


def sequences(objective: str, row: dict) -> list[tuple[list[int], int]]:
    """(token ids, prompt length) of the sequences TRL scores for one tokenized row."""
    if objective == "dpo":
        prompt = list(row["prompt_ids"])
        return [(prompt + list(row[f"{name}_ids"]), len(prompt))
                for name in ("chosen", "rejected")]
    return [(list(row["completion_input_ids"]), len(row["prompt_input_ids"]))]


def batch_result(trainer, objective: str, batch: dict) -> dict:
    """Loss, mean rewards per class and delta of one collated batch, by TRL's own code."""
    if objective == "dpo":
        loss = trainer.compute_loss(trainer.model, batch)
        metrics = {key: values[-1] for key, values in trainer._metrics["train"].items()
                   if key in ("rewards/chosen", "rewards/rejected")}
        return {"loss": float(loss), "rewards_chosen": metrics["rewards/chosen"],
                "rewards_rejected": metrics["rewards/rejected"]}
    loss, metrics = trainer.get_batch_loss_metrics(trainer.model, batch)
    result = {"loss": float(loss), "delta": float(metrics["delta"])}
    for name in ("chosen", "rejected"):
        if metrics.get(f"count/{name}"):
            result[f"rewards_{name}"] = metrics[f"rewards/{name}_sum"] / metrics[f"count/{name}"]
    return result


def evaluate(spec: dict) -> dict:
    import torch

    trainer = build_trainer(spec)
    objective, size = spec["objective"], spec["rows_per_step"]
    if objective == "bce":
        trainer.running.mean = 0.0  # a float: TRL averages the delta tensor for its metrics
        trainer.running.update = lambda rewards: None  # delta stays at 0
    trainer.model.train()
    dataset = trainer.train_dataset
    batches = []
    with torch.no_grad():
        for start in range(0, size * spec["batches"], size):
            rows = [dataset[index] for index in range(start, start + size)]
            collated = trainer.data_collator(rows)
            result = batch_result(trainer, objective, collated)
            result["sequences"] = [pair for row in rows for pair in sequences(objective, row)]
            result["labels"] = [bool(row["label"]) for row in rows] if "label" in rows[0] else None
            batches.append(result)
    return {"batches": batches, "trl_version": __import__("trl").__version__}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: trl_parity.py SPEC.json RESULT.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text())
    Path(argv[1]).write_text(json.dumps(evaluate(spec)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
