"""Loss parity with TRL on identical batches: DPO and BCE agree, BCO's delta differs.

    .venv/bin/python -m bench.compare.parity                 # dpo, bce and bco, 3 batches
    .venv/bin/python -m bench.compare.parity --objectives dpo --batches 1

The policy is the tiny model; the reference is a copy with seeded noise on every weight,
so the implicit rewards are not all zero (a reference equal to the policy makes every loss
log 2 and proves nothing). TRL tokenizes and collates the rows with its own code and
reports the token ids it built (``trl_parity.py``); the platform scores exactly those
sequences with its own padding, log-prob and objective code. Both evaluate consecutive
batches at the initial weights: an optimizer step in between would compare DeepSpeed's
AdamW with torch's rather than the losses.

- ``dpo``: the two definitions are the same (logistic loss of the beta-scaled log-ratio
  margin); loss and mean rewards must agree within float tolerance.
- ``bce``: the platform's ``bce`` against TRL's BCO trainer with its delta held at 0.
- ``bco``: the definitions of delta differ. TRL keeps a running mean of every reward seen,
  both classes pooled (``RunningMoments``), so a batch with more thumbs-down rows pulls
  delta toward their rewards. The paper (eq. 7) and the platform take the average of the
  two class means, each class weighing one half whatever its count, with an exponential
  moving average over batches. The check recomputes both formulas from the platform's
  rewards and shows that each system matches its own.

One JSON line per objective goes to ``bench/results/compare_parity.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from bench.compare import settings

logger = logging.getLogger(__name__)

TOLERANCE = 1e-5  # absolute and relative, fp32
DEFAULT_RESULTS = settings.RESULTS / "compare_parity.jsonl"


def noisy_reference(model_path: str, folder: Path, seed: int, scale: float = 0.5) -> Path:
    """A copy of the model with seeded Gaussian noise (``scale`` x each weight's std)."""
    from transformers import AutoModelForCausalLM

    from platform.data.tokenize import load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            spread = float(parameter.std()) if parameter.numel() > 1 else 0.0
            noise = torch.randn(parameter.shape, generator=generator)
            parameter.add_(noise * scale * spread)
    target = folder / "reference"
    model.save_pretrained(target)
    load_tokenizer(model_path).save_pretrained(target)
    return target


def trl_batches(objective: str, spec: dict, folder: Path) -> dict:
    """Runs ``trl_parity.py`` in the TRL environment of ``objective``."""
    (folder / "parity_spec.json").write_text(json.dumps(spec))
    done = subprocess.run([str(settings.trl_python(objective)), str(settings.TRL_PARITY),
                           "parity_spec.json", "parity_result.json"], cwd=folder,
                          capture_output=True, text=True, env=_environment())
    if done.returncode != 0:
        raise RuntimeError(f"TRL's parity run for {objective} failed (exit {done.returncode}):"
                           f"\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads((folder / "parity_result.json").read_text())


def _environment() -> dict:
    import os

    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def platform_batch(objective, policy, reference, batch: dict, pad_token_id: int) -> dict:
    """The platform's loss, mean rewards and delta on the sequences TRL built."""
    from objectives import metrics
    from objectives.base import BinaryLogps, PreferenceLogps
    from platform.train.layout import Layout, layout_sequences
    from platform.train.scoring import TokenScorer, completion_logps

    pairs = batch["sequences"]
    if objective.data_shape.value == "paired":  # the platform's order: chosen rows, then rejected
        pairs = pairs[0::2] + pairs[1::2]
    sequences = layout_sequences([np.asarray(ids) for ids, _ in pairs],
                                 np.asarray([prompt for _, prompt in pairs]), pad_token_id,
                                 Layout.SHARED)
    with torch.no_grad():
        policy_logps, lengths = completion_logps(TokenScorer(policy), sequences)
        reference_logps, _ = completion_logps(TokenScorer(reference), sequences)
    if batch["labels"] is None:
        (policy_chosen, policy_rejected), (reference_chosen, reference_rejected) = (
            policy_logps.chunk(2), reference_logps.chunk(2))
        chosen_lengths, rejected_lengths = lengths.chunk(2)
        inputs = PreferenceLogps(policy_chosen, policy_rejected, reference_chosen,
                                 reference_rejected, chosen_lengths, rejected_lengths)
        keys = {"rewards_chosen": metrics.REWARDS_CHOSEN,
                "rewards_rejected": metrics.REWARDS_REJECTED}
    else:
        inputs = BinaryLogps(policy_logps=policy_logps, reference_logps=reference_logps,
                             labels=torch.tensor(batch["labels"]), completion_lengths=lengths)
        keys = {"rewards_chosen": metrics.REWARDS_UP, "rewards_rejected": metrics.REWARDS_DOWN,
                "delta": metrics.DELTA}
    output = objective(inputs)
    result = {name: float(output.metrics[key]) for name, key in keys.items()}
    result["loss"] = float(output.loss)
    result["rewards"] = (settings_rewards(policy_logps, reference_logps, objective.config.beta)
                         if batch["labels"] is not None else None)
    return result


def settings_rewards(policy_logps, reference_logps, beta: float) -> list[float]:
    """The implicit rewards beta * (log pi - log pi_ref), per row."""
    return (beta * (policy_logps - reference_logps)).tolist()


def close(left: float, right: float) -> bool:
    return math.isclose(left, right, rel_tol=TOLERANCE, abs_tol=TOLERANCE)


def delta_formulas(batches: list[dict], decay: float) -> list[dict]:
    """Both definitions of delta, recomputed from the platform's per-row rewards.

    ``pooled_running_mean``: TRL's, the mean of every reward seen so far (both classes).
    ``class_mean_average``: the platform's, (EMA of up means + EMA of down means) / 2.
    """
    seen: list[float] = []
    up_mean = down_mean = None
    formulas = []
    for batch in batches:
        rewards, labels = batch["platform"]["rewards"], batch["labels"]
        seen.extend(rewards)
        up = [reward for reward, label in zip(rewards, labels, strict=True) if label]
        down = [reward for reward, label in zip(rewards, labels, strict=True) if not label]
        up_mean = _ema(up_mean, up, decay)
        down_mean = _ema(down_mean, down, decay)
        formulas.append({"pooled_running_mean": sum(seen) / len(seen),
                         "class_mean_average": ((up_mean or 0.0) + (down_mean or 0.0)) / 2,
                         "thumbs_up": len(up), "thumbs_down": len(down)})
    return formulas


def _ema(previous: float | None, values: list[float], decay: float) -> float | None:
    if not values:
        return previous
    mean = sum(values) / len(values)
    return mean if previous is None else decay * previous + (1 - decay) * mean


def platform_ids_match(objective: str, rows: list[dict], batches: list[dict],
                       model_path: str, setting: settings.Setting) -> bool:
    """Whether the platform's own tokenization gives the token ids TRL built."""
    from platform.data.tokenize import LengthLimits, encode_example, load_tokenizer

    tokenizer = load_tokenizer(model_path)
    limits = LengthLimits(setting.max_length, setting.max_prompt_length,
                          setting.max_completion_length)
    ours = []
    for row in rows:
        prompt = row["prompt"][0]["content"]
        for name in ("chosen", "rejected") if objective == "dpo" else ("completion",):
            ours.append(list(encode_example(tokenizer, prompt, row[name][0]["content"],
                                            limits)))
    theirs = [list(pair) for batch in batches for pair in batch["sequences"]]
    return ours == theirs


def check(objective_name: str, batches: int, seed: int, folder: Path) -> dict:
    """Runs both sides of the check for one objective; returns its JSON record."""
    from platform import registry
    from platform.data.tokenize import load_tokenizer
    from platform.models.loading import load_causal_lm

    setting = settings.Setting(objective="dpo" if objective_name == "dpo" else "bco",
                               model="tiny", seed=seed)
    model_path = settings.resolve_model_path("tiny")
    reference_path = noisy_reference(model_path, folder, seed)
    data_objective = "dpo" if objective_name == "dpo" else "bco"
    rows = settings.conversational_rows(data_objective)[:setting.rows_per_step * batches]
    spec = {**settings.trl_spec(setting, model_path, Path(), folder, 1), "rows": rows,
            "objective": objective_name, "reference_path": str(reference_path),
            "batches": batches}
    trl = trl_batches(objective_name, spec, folder)

    objective = registry.build(objective_name, registry.build_config(
        objective_name, {"beta": setting.beta}))
    policy = load_causal_lm(model_path, False).eval()
    reference = load_causal_lm(str(reference_path), False).eval()
    pad_token_id = load_tokenizer(model_path).pad_token_id
    compared = []
    for batch in trl["batches"]:
        ours = platform_batch(objective, policy, reference, batch, pad_token_id)
        keys = [key for key in ("loss", "rewards_chosen", "rewards_rejected") if key in batch]
        compared.append({"labels": batch["labels"], "platform": ours,
                         "trl": {key: batch[key] for key in (*keys, "delta") if key in batch},
                         "agree": all(close(ours[key], batch[key]) for key in keys)})
    record = {"kind": "parity", "objective": objective_name, "trl_version": trl["trl_version"],
              "tolerance": TOLERANCE, "same_token_ids": platform_ids_match(
                  data_objective, rows, trl["batches"], model_path, setting),
              "batches": compared}
    if objective_name == "bco":
        decay = objective.config.delta_ema_decay
        for entry, formulas in zip(compared, delta_formulas(compared, decay), strict=True):
            entry["delta_formulas"] = formulas
    for entry in compared:
        entry["platform"].pop("rewards", None)
    record["agree"] = all(entry["agree"] for entry in compared)
    return record


def summary_lines(record: dict) -> list[str]:
    """A readable account of one record."""
    lines = [f"{record['objective']}: same token ids {record['same_token_ids']}, "
             f"losses and rewards agree within {record['tolerance']}: {record['agree']}"]
    for index, entry in enumerate(record["batches"], start=1):
        platform, trl = entry["platform"], entry["trl"]
        line = (f"  batch {index}: loss platform {platform['loss']:.7f} TRL {trl['loss']:.7f}"
                f"; rewards (chosen/up, rejected/down) platform "
                f"{platform['rewards_chosen']:+.6f} {platform['rewards_rejected']:+.6f} TRL "
                f"{trl.get('rewards_chosen', float('nan')):+.6f} "
                f"{trl.get('rewards_rejected', float('nan')):+.6f}")
        if "delta_formulas" in entry:
            formulas = entry["delta_formulas"]
            line += (f"\n    {formulas['thumbs_up']} up / {formulas['thumbs_down']} down: delta "
                     f"platform {platform['delta']:+.6f} (class-mean average "
                     f"{formulas['class_mean_average']:+.6f}), TRL {trl['delta']:+.6f} (pooled "
                     f"running mean {formulas['pooled_running_mean']:+.6f})")
        lines.append(line)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objectives", default="dpo,bce,bco")
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.objectives.split(",")) - {"dpo", "bce", "bco"})
    if unknown:
        parser.error(f"--objectives: unknown {unknown}; choose from dpo, bce, bco")
    failed = 0
    for name in args.objectives.split(","):
        with tempfile.TemporaryDirectory(prefix="compare-parity-") as folder:
            record = check(name, args.batches, args.seed, Path(folder))
        record["date"] = datetime.now(UTC).isoformat(timespec="seconds")
        failed += name in ("dpo", "bce") and not record["agree"]
        with args.results.open("a") as stream:
            stream.write(json.dumps(record) + "\n")
        print("\n".join(summary_lines(record)), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
