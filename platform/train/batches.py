"""From the rows a worker's data shard yields to model inputs and objective inputs.

Each data shape has one :class:`ShapeAdapter`: it lays the shard's rows out as one
:class:`SequenceBatch` (a single forward pass per model, padded or packed) and turns the per-sequence
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
# Keys of precomputed reference log-probs (platform.train.reference_logps) in the extras:
# the sequences' own, in the SequenceBatch's row order, and the mismatched pairs'.
REFERENCE = "reference_logps"
REFERENCE_MISMATCHED = "reference_mismatched_logps"


@dataclass
class SequenceBatch:
    """Token sequences laid out for one forward pass, and which of their tokens are scored.

    A row holds one right-padded sequence, or, packed, several sequences back to back with
    position ids restarting at each (no attention mask: the model reads the boundaries
    from the position ids). The scored tokens are the completion tokens; their logits sit
    one position earlier.
    """

    input_ids: torch.Tensor  # (rows, width) long
    position_ids: torch.Tensor  # (rows, width) long, 0 where each sequence starts
    attention_mask: torch.Tensor | None  # (rows, width) long, 1 on real tokens; None packed
    target_index: torch.Tensor  # (T,) long, flat (row * width + column) of each logit used
    target_ids: torch.Tensor  # (T,) long, the scored token that logit predicts
    target_sequence: torch.Tensor  # (T,) long, the sequence (0..n-1) the token belongs to
    num_sequences: int
    num_tokens: int  # real tokens, padding excluded

    def to(self, device: torch.device) -> SequenceBatch:
        def move(tensor):
            return None if tensor is None else tensor.to(device)

        return SequenceBatch(
            move(self.input_ids), move(self.position_ids), move(self.attention_mask),
            move(self.target_index), move(self.target_ids), move(self.target_sequence),
            self.num_sequences, self.num_tokens,
        )


def pack_rows(lengths: list[int], capacity: int) -> list[list[int]]:
    """First-fit decreasing: sequence indices per row, no row longer than ``capacity``.
    Deterministic for given lengths; ties keep the input order."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    rows: list[list[int]] = []
    room: list[int] = []
    for index in order:
        slot = next((r for r, free in enumerate(room) if free >= lengths[index]), None)
        if slot is None:
            rows.append([])
            room.append(capacity)
            slot = len(rows) - 1
        rows[slot].append(index)
        room[slot] -= lengths[index]
    return rows


def layout_sequences(sequences: list[np.ndarray], prompt_lengths: np.ndarray,
                     pad_token_id: int, packed: bool = False) -> SequenceBatch:
    """Lay out token sequences (padded, or packed into rows no wider than the longest);
    positions from ``prompt_length`` on are completion tokens, the ones scored."""
    lengths = [len(seq) for seq in sequences]
    width = max(lengths)
    placement = pack_rows(lengths, width) if packed else [[i] for i in range(len(lengths))]
    input_ids = np.full((len(placement), width), pad_token_id, dtype=np.int64)
    position_ids = np.zeros((len(placement), width), dtype=np.int64)
    attention_mask = np.zeros((len(placement), width), dtype=np.int64)
    target_index, target_ids, target_sequence = [], [], []
    for row, members in enumerate(placement):
        start = 0
        for index in members:
            length, prompt = lengths[index], int(prompt_lengths[index])
            tokens = np.asarray(sequences[index], dtype=np.int64)
            input_ids[row, start:start + length] = tokens
            position_ids[row, start:start + length] = np.arange(length)
            attention_mask[row, start:start + length] = 1
            # The logit at position t predicts token t + 1.
            target_index.append(row * width + start + np.arange(prompt - 1, length - 1))
            target_ids.append(tokens[prompt:])
            target_sequence.append(np.full(length - prompt, index, dtype=np.int64))
            start += length
        # Padding continues the last sequence's positions: it comes after every real token,
        # so under the causal mask no real token attends to it.
        position_ids[row, start:] = np.arange(width - start) + (position_ids[row, start - 1] + 1)
    return SequenceBatch(
        input_ids=torch.from_numpy(input_ids),
        position_ids=torch.from_numpy(position_ids),
        attention_mask=None if packed else torch.from_numpy(attention_mask),
        target_index=torch.from_numpy(np.concatenate(target_index)),
        target_ids=torch.from_numpy(np.concatenate(target_ids)),
        target_sequence=torch.from_numpy(np.concatenate(target_sequence)),
        num_sequences=len(sequences),
        num_tokens=int(sum(lengths)),
    )


@dataclass(frozen=True)
class ShapeAdapter:
    # (rows of a shard batch, pad token id, packed) -> (sequences for one forward pass,
    # extra per-row tensors)
    collate: Callable[[dict[str, np.ndarray], int, bool], tuple[SequenceBatch, dict]]
    # (policy logps, reference logps or None, completion lengths, extras) -> objective input
    assemble: Callable[..., BinaryLogps | PreferenceLogps]


def _collate_binary(rows: dict[str, np.ndarray], pad_token_id: int, packed: bool = False):
    sequences = layout_sequences(list(rows["input_ids"]), rows["prompt_length"], pad_token_id,
                                 packed)
    extras = {"labels": torch.as_tensor(np.asarray(rows["label"], dtype=bool))}
    if "weight" in rows:
        extras["weights"] = torch.as_tensor(np.asarray(rows["weight"], dtype=np.float32))
    if "mismatched_input_ids" in rows:
        extras[MISMATCHED] = layout_sequences(
            list(rows["mismatched_input_ids"]), rows["mismatched_prompt_length"], pad_token_id,
            packed)
    for key in (REFERENCE, REFERENCE_MISMATCHED):
        if key in rows:
            extras[key] = _floats(rows[key])
    return sequences, extras


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


def _collate_paired(rows: dict[str, np.ndarray], pad_token_id: int, packed: bool = False):
    # Chosen rows first, then rejected rows: one forward pass scores both.
    sequences = list(rows["chosen_input_ids"]) + list(rows["rejected_input_ids"])
    prompt_lengths = np.concatenate([rows["prompt_length"], rows["prompt_length"]])
    extras = {}
    if "reference_chosen_logps" in rows:
        extras[REFERENCE] = torch.cat([_floats(rows["reference_chosen_logps"]),
                                       _floats(rows["reference_rejected_logps"])])
    return layout_sequences(sequences, prompt_lengths, pad_token_id, packed), extras


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
