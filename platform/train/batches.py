"""From the rows a worker's data shard yields to model inputs and objective inputs.

Each data shape has one :class:`ShapeAdapter`: it pads the shard's rows into one
:class:`SequenceBatch` (a single forward pass per model) and turns the per-sequence
log-probs back into the objective's input type. The trainer looks the adapter up by the
objective's declared data shape and never by its name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from objectives.base import BinaryLogps, DataShape, PreferenceLogps

# The key of an extra SequenceBatch of mismatched (prompt, other completion) pairs; the
# trainer scores it and adds policy_/reference_mismatched_logps to the extras.
MISMATCHED = "mismatched"


@dataclass
class SequenceBatch:
    input_ids: torch.Tensor  # (n, seq) long, right-padded
    attention_mask: torch.Tensor  # (n, seq) long, 1 on real tokens
    completion_mask: torch.Tensor  # (n, seq) bool, True on completion tokens (the ones scored)

    def to(self, device: torch.device) -> SequenceBatch:
        return SequenceBatch(
            self.input_ids.to(device), self.attention_mask.to(device),
            self.completion_mask.to(device),
        )

    @property
    def num_tokens(self) -> int:
        return int(self.attention_mask.sum())


def pad_sequences(
    sequences: list[np.ndarray], prompt_lengths: np.ndarray, pad_token_id: int
) -> SequenceBatch:
    """Right-pad token sequences; positions from ``prompt_length`` on are completion."""
    lengths = torch.tensor([len(seq) for seq in sequences])
    width = int(lengths.max())
    input_ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    for row, seq in enumerate(sequences):
        input_ids[row, : len(seq)] = torch.as_tensor(np.asarray(seq, dtype=np.int64))
    positions = torch.arange(width).unsqueeze(0)  # (1, seq)
    attention_mask = (positions < lengths.unsqueeze(1)).long()
    prompt = torch.as_tensor(np.asarray(prompt_lengths, dtype=np.int64)).unsqueeze(1)
    completion_mask = (positions >= prompt) & attention_mask.bool()
    return SequenceBatch(input_ids, attention_mask, completion_mask)


@dataclass(frozen=True)
class ShapeAdapter:
    # rows of a shard batch -> (sequences for one forward pass, extra per-row tensors)
    collate: Callable[[dict[str, np.ndarray], int], tuple[SequenceBatch, dict]]
    # (policy logps, reference logps or None, completion lengths, extras) -> objective input
    assemble: Callable[..., BinaryLogps | PreferenceLogps]


def _collate_binary(rows: dict[str, np.ndarray], pad_token_id: int):
    sequences = pad_sequences(list(rows["input_ids"]), rows["prompt_length"], pad_token_id)
    extras = {"labels": torch.as_tensor(np.asarray(rows["label"], dtype=bool))}
    if "weight" in rows:
        extras["weights"] = torch.as_tensor(np.asarray(rows["weight"], dtype=np.float32))
    if "mismatched_input_ids" in rows:
        extras[MISMATCHED] = pad_sequences(
            list(rows["mismatched_input_ids"]), rows["mismatched_prompt_length"], pad_token_id
        )
    return sequences, extras


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


def _collate_paired(rows: dict[str, np.ndarray], pad_token_id: int):
    # Chosen rows first, then rejected rows: one forward pass scores both.
    sequences = list(rows["chosen_input_ids"]) + list(rows["rejected_input_ids"])
    prompt_lengths = np.concatenate([rows["prompt_length"], rows["prompt_length"]])
    return pad_sequences(sequences, prompt_lengths, pad_token_id), {}


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
