"""From tokenized normal rows to the columns the trainer reads (``platform.train.batches``).

Binary rows give ``input_ids``, ``prompt_length``, ``label`` (and ``weight`` when the
stream carries one); paired rows give ``chosen_input_ids``, ``rejected_input_ids`` and the
shared ``prompt_length``. Lengths are fitted here with :func:`fit_lengths`.
"""

from __future__ import annotations

import pyarrow as pa

from platform.data.tokenize import IDS, LengthLimits, fit_lengths

BINARY_COLUMNS = ["input_ids", "prompt_length", "label"]
MISMATCHED_COLUMNS = ["mismatched_input_ids", "mismatched_prompt_length"]
PAIRED_COLUMNS = ["chosen_input_ids", "rejected_input_ids", "prompt_length"]


def assemble_binary_batch(batch: pa.Table, limits: LengthLimits,
                          mismatched_pairs: bool = False) -> pa.Table:
    """Binary rows to model inputs.

    With ``mismatched_pairs`` each row also gets ``mismatched_input_ids`` and
    ``mismatched_prompt_length``: its prompt followed by the completion of the next row of
    the (shuffled) batch, the unrelated completion y' of KTO's reference point. A batch of
    one row pairs the row with itself.
    """
    prompts = batch.column("prompt_ids").to_pylist()
    completions = batch.column("completion_ids").to_pylist()
    ids, lengths = _join(prompts, completions, limits)
    out = {"input_ids": pa.array(ids, IDS), "prompt_length": pa.array(lengths, pa.int64()),
           "label": batch.column("label")}
    if mismatched_pairs:
        ids, lengths = _join(prompts, completions[1:] + completions[:1], limits)
        out["mismatched_input_ids"] = pa.array(ids, IDS)
        out["mismatched_prompt_length"] = pa.array(lengths, pa.int64())
    if "weight" in batch.column_names:  # per-row loss weights travel with their rows
        out["weight"] = batch.column("weight")
    return pa.table(out)


def _join(prompts: list[list[int]], completions: list[list[int]],
          limits: LengthLimits) -> tuple[list[list[int]], list[int]]:
    ids, lengths = [], []
    for prompt, completion in zip(prompts, completions, strict=True):
        prompt, completion, _, _ = fit_lengths(prompt, completion, limits)
        ids.append(prompt + completion)
        lengths.append(len(prompt))
    return ids, lengths


def assemble_paired_batch(batch: pa.Table, limits: LengthLimits) -> pa.Table:
    """Paired rows to model inputs; both sides keep the same prompt tokens, fitted to the
    longer completion."""
    chosen_ids, rejected_ids, lengths = [], [], []
    for prompt, chosen, rejected in zip(batch.column("prompt_ids").to_pylist(),
                                        batch.column("chosen_ids").to_pylist(),
                                        batch.column("rejected_ids").to_pylist(), strict=True):
        longer = chosen if len(chosen) >= len(rejected) else rejected
        prompt, _, _, _ = fit_lengths(prompt, longer, limits)
        chosen_ids.append(prompt + chosen[: limits.max_completion_length])
        rejected_ids.append(prompt + rejected[: limits.max_completion_length])
        lengths.append(len(prompt))
    return pa.table({"chosen_input_ids": pa.array(chosen_ids, IDS),
                     "rejected_input_ids": pa.array(rejected_ids, IDS),
                     "prompt_length": pa.array(lengths, pa.int64())})
