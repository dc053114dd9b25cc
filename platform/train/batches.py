"""From the rows a worker's data shard yields to model inputs and objective inputs.

Each data shape has one :class:`ShapeAdapter`: it lays the shard's rows out as one
:class:`~platform.train.layout.SequenceBatch` (a single forward pass per model, in the
run's layout) and turns the per-sequence log-probs back into the objective's input type.
The trainer looks the adapter up by the objective's declared data shape and never by its
name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from objectives.base import BinaryLogps, DataShape, PreferenceLogps
from platform.train.layout import Layout, SequenceBatch, layout_sequences

# Mismatched (prompt, other completion) pairs of KTO's reference point, scored without
# gradient. Padded or packed they are an extra SequenceBatch under MISMATCHED; with shared
# prompts they ride in the rows' own batch (each shares its row's prompt), after the rows:
# ROWS then gives how many of the batch's sequences are the rows. Either way the trainer
# adds policy_/reference_mismatched_logps to the extras.
MISMATCHED = "mismatched"
ROWS = "rows"
# Keys of precomputed reference log-probs (platform.train.reference_logps) in the extras:
# the sequences' own, in the SequenceBatch's row order, and the mismatched pairs'.
REFERENCE = "reference_logps"
REFERENCE_MISMATCHED = "reference_mismatched_logps"


@dataclass(frozen=True)
class ShapeAdapter:
    # (rows of a shard batch, pad token id, layout) -> (sequences for one forward pass,
    # extra per-row tensors)
    collate: Callable[[dict[str, np.ndarray], int, Layout], tuple[SequenceBatch, dict]]
    # (policy logps, reference logps or None, completion lengths, extras) -> objective input
    assemble: Callable[..., BinaryLogps | PreferenceLogps]


def _collate_binary(rows: dict[str, np.ndarray], pad_token_id: int,
                    layout: Layout = Layout.PADDED):
    sequences, prompt_lengths = list(rows["input_ids"]), rows["prompt_length"]
    extras = {"labels": torch.as_tensor(np.asarray(rows["label"], dtype=bool))}
    if "weight" in rows:
        extras["weights"] = torch.as_tensor(np.asarray(rows["weight"], dtype=np.float32))
    reference = [_floats(rows[key]) for key in (REFERENCE, REFERENCE_MISMATCHED) if key in rows]
    if "mismatched_input_ids" not in rows:
        if reference:
            extras[REFERENCE] = reference[0]
        return layout_sequences(sequences, prompt_lengths, pad_token_id, layout), extras
    mismatched = list(rows["mismatched_input_ids"])
    mismatched_prompts = rows["mismatched_prompt_length"]
    if Layout(layout) is Layout.SHARED:
        extras[ROWS] = len(sequences)
        if reference:
            extras[REFERENCE] = torch.cat(reference)
        batch = layout_sequences(sequences + mismatched,
                                 np.concatenate([prompt_lengths, mismatched_prompts]),
                                 pad_token_id, layout)
        return batch, extras
    extras[MISMATCHED] = layout_sequences(mismatched, mismatched_prompts, pad_token_id, layout)
    if reference:
        extras[REFERENCE] = reference[0]
        extras[REFERENCE_MISMATCHED] = reference[1]
    return layout_sequences(sequences, prompt_lengths, pad_token_id, layout), extras


def _floats(values: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.float32))


def _assemble_binary(policy_logps, reference_logps, lengths, extras) -> BinaryLogps:
    device = policy_logps.device
    weights = extras.get("weights")
    return BinaryLogps(
        policy_logps=policy_logps,
        reference_logps=reference_logps,
        labels=extras["labels"].to(device),
        completion_lengths=lengths,
        weights=weights.to(device, policy_logps.dtype) if weights is not None else None,
        policy_mismatched_logps=extras.get("policy_mismatched_logps"),
        reference_mismatched_logps=extras.get("reference_mismatched_logps"),
    )


def _collate_paired(rows: dict[str, np.ndarray], pad_token_id: int,
                    layout: Layout = Layout.PADDED):
    # Chosen rows first, then rejected rows: one forward pass scores both.
    sequences = list(rows["chosen_input_ids"]) + list(rows["rejected_input_ids"])
    prompt_lengths = np.concatenate([rows["prompt_length"], rows["prompt_length"]])
    extras = {}
    if "reference_chosen_logps" in rows:
        extras[REFERENCE] = torch.cat([_floats(rows["reference_chosen_logps"]),
                                       _floats(rows["reference_rejected_logps"])])
    return layout_sequences(sequences, prompt_lengths, pad_token_id, layout), extras


def _assemble_paired(policy_logps, reference_logps, lengths, extras) -> PreferenceLogps:
    policy_chosen_logps, policy_rejected_logps = policy_logps.chunk(2)
    chosen_lengths, rejected_lengths = lengths.chunk(2)
    reference_chosen_logps = reference_rejected_logps = None
    if reference_logps is not None:
        reference_chosen_logps, reference_rejected_logps = reference_logps.chunk(2)
    return PreferenceLogps(
        policy_chosen_logps=policy_chosen_logps,
        policy_rejected_logps=policy_rejected_logps,
        reference_chosen_logps=reference_chosen_logps,
        reference_rejected_logps=reference_rejected_logps,
        chosen_lengths=chosen_lengths,
        rejected_lengths=rejected_lengths,
    )


ADAPTERS: dict[DataShape, ShapeAdapter] = {
    DataShape.BINARY: ShapeAdapter(_collate_binary, _assemble_binary),
    DataShape.PAIRED: ShapeAdapter(_collate_paired, _assemble_paired),
}
