"""Laying token sequences out for one forward pass: padded, packed or with shared prompts.

Three layouts of the same sequences give the same log-probs (to float rounding):

- ``padded``: one sequence per row, right-padded to the longest; a 2-D attention mask.
- ``packed``: several sequences per row (first-fit decreasing into rows no wider than the
  longest sequence), position ids restarting at each; no attention mask, the model reads
  the boundaries from the position ids. No padding is computed, but the rows' tails.
- ``shared``: packed, and sequences with the same prompt tokens (a preference pair's chosen
  and rejected answers, KTO's mismatched pair of a row) share one copy of the prompt. Each
  completion continues the prompt's positions and attends to the prompt and to itself, not
  to its siblings: a 4-D attention mask says so. A pair then costs prompt + 2 completions
  instead of 2 x (prompt + completion).

Only completion tokens are scored; the logit that predicts one sits one position earlier,
or, for a completion's first token, at its prompt's last position.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import torch


class Layout(StrEnum):
    PADDED = "padded"
    PACKED = "packed"
    SHARED = "shared"


@dataclass
class SequenceBatch:
    """Sequences laid out for one forward pass, and which of their tokens are scored."""

    input_ids: torch.Tensor  # (rows, width) long
    position_ids: torch.Tensor  # (rows, width) long
    # padded: (rows, width) long, 1 on real tokens; packed: None; shared: (rows, 1, width,
    # width) bool, True where a query (dim 2) may attend to a key (dim 3)
    attention_mask: torch.Tensor | None
    target_index: torch.Tensor  # (T,) long, flat (row * width + column) of each logit used
    target_ids: torch.Tensor  # (T,) long, the scored token that logit predicts
    target_sequence: torch.Tensor  # (T,) long, the sequence (0..n-1) the token belongs to
    sequence_lengths: torch.Tensor  # (n,) long, tokens of each sequence (prompt included)

    @property
    def num_sequences(self) -> int:
        return len(self.sequence_lengths)

    @property
    def num_tokens(self) -> int:
        """Tokens of the sequences, as if each had its own prompt (padding excluded)."""
        return int(self.sequence_lengths.sum())

    def to(self, device: torch.device) -> SequenceBatch:
        def move(tensor):
            return None if tensor is None else tensor.to(device)

        return SequenceBatch(
            move(self.input_ids), move(self.position_ids), move(self.attention_mask),
            move(self.target_index), move(self.target_ids), move(self.target_sequence),
            self.sequence_lengths,
        )


def pack_rows(lengths: list[int], capacity: int) -> list[list[int]]:
    """First-fit decreasing: item indices per row, no row longer than ``capacity``.
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


@dataclass
class _Group:
    """Sequences laid out together: one prompt, then each member's completion."""

    prompt: np.ndarray
    members: list[int]  # sequence indices
    completions: list[np.ndarray]

    @property
    def length(self) -> int:
        return len(self.prompt) + sum(len(c) for c in self.completions)


def layout_sequences(sequences: list[np.ndarray], prompt_lengths: np.ndarray,
                     pad_token_id: int, layout: Layout | str = Layout.PADDED) -> SequenceBatch:
    """Lay out token sequences; positions from ``prompt_length`` on are completion tokens,
    the ones scored. Every sequence needs at least one prompt and one completion token."""
    layout = Layout(layout)
    tokens = [np.asarray(seq, dtype=np.int64) for seq in sequences]
    prompts = [int(p) for p in prompt_lengths]
    for index, (seq, prompt) in enumerate(zip(tokens, prompts, strict=True)):
        if not 1 <= prompt < len(seq):
            raise ValueError(
                f"sequence {index} has {len(seq)} tokens and a prompt of {prompt}: a scored "
                "sequence needs at least one prompt token (the first completion token's "
                "logit comes from it) and one completion token.")
    groups = _groups(tokens, prompts, share=layout is Layout.SHARED)
    capacity = max(group.length for group in groups)
    if layout is Layout.PADDED:
        placement = [[g] for g in range(len(groups))]
    else:
        placement = pack_rows([group.length for group in groups], capacity)
    return _build(groups, placement, capacity, pad_token_id, layout,
                  torch.tensor([len(seq) for seq in tokens]))


def _groups(tokens: list[np.ndarray], prompts: list[int], share: bool) -> list[_Group]:
    """One group per sequence, or, sharing, per distinct prompt (in order of appearance)."""
    groups: list[_Group] = []
    by_prompt: dict[bytes, _Group] = {}
    for index, (seq, prompt) in enumerate(zip(tokens, prompts, strict=True)):
        key = seq[:prompt].tobytes()
        group = by_prompt.get(key) if share else None
        if group is None:
            group = _Group(seq[:prompt], [], [])
            groups.append(group)
            by_prompt[key] = group
        group.members.append(index)
        group.completions.append(seq[prompt:])
    return groups


def _build(groups: list[_Group], placement: list[list[int]], width: int, pad_token_id: int,
           layout: Layout, sequence_lengths: torch.Tensor) -> SequenceBatch:
    rows = len(placement)
    input_ids = np.full((rows, width), pad_token_id, dtype=np.int64)
    position_ids = np.zeros((rows, width), dtype=np.int64)
    segment = np.full((rows, width), -1, dtype=np.int64)  # group per token, -1 on padding
    branch = np.zeros((rows, width), dtype=np.int64)  # 0: prompt, k: the group's k-th answer
    target_index, target_ids, target_sequence = [], [], []
    for row, members in enumerate(placement):
        start = 0
        for group_index in members:
            group = groups[group_index]
            prompt_length = len(group.prompt)
            end = start + prompt_length
            input_ids[row, start:end] = group.prompt
            position_ids[row, start:end] = np.arange(prompt_length)
            segment[row, start:end] = group_index
            last_prompt = row * width + end - 1
            for k, (index, completion) in enumerate(zip(group.members, group.completions,
                                                        strict=True), start=1):
                span = slice(end, end + len(completion))
                input_ids[row, span] = completion
                position_ids[row, span] = prompt_length + np.arange(len(completion))
                segment[row, span], branch[row, span] = group_index, k
                # The first completion token is predicted at the prompt's last position,
                # each later one at the position before it.
                flat = row * width + end + np.arange(len(completion) - 1)
                target_index.append(np.concatenate([[last_prompt], flat]))
                target_ids.append(completion)
                target_sequence.append(np.full(len(completion), index, dtype=np.int64))
                end += len(completion)
            start = end
        # Padding continues the last positions: it comes after every real token of the row,
        # so under the causal mask no real token attends to it.
        position_ids[row, start:] = np.arange(width - start) + position_ids[row, start - 1] + 1
    return SequenceBatch(
        input_ids=torch.from_numpy(input_ids),
        position_ids=torch.from_numpy(position_ids),
        attention_mask=_attention_mask(segment, branch, layout),
        target_index=torch.from_numpy(np.concatenate(target_index)),
        target_ids=torch.from_numpy(np.concatenate(target_ids)),
        target_sequence=torch.from_numpy(np.concatenate(target_sequence)),
        sequence_lengths=sequence_lengths,
    )


def _attention_mask(segment: np.ndarray, branch: np.ndarray,
                    layout: Layout) -> torch.Tensor | None:
    if layout is Layout.PADDED:
        return torch.from_numpy((segment >= 0).astype(np.int64))
    if layout is Layout.PACKED:
        return None
    width = segment.shape[1]
    query_segment, key_segment = segment[:, :, None], segment[:, None, :]
    query_branch, key_branch = branch[:, :, None], branch[:, None, :]
    causal = np.tril(np.ones((width, width), dtype=bool))[None]
    visible = ((query_segment == key_segment) & (query_segment >= 0)
               & ((key_branch == 0) | (key_branch == query_branch)) & causal)
    # A padding query attends to itself alone, so that no softmax row is empty (NaN).
    visible |= np.eye(width, dtype=bool)[None] & (query_segment < 0)
    return torch.from_numpy(visible[:, None])  # (rows, 1, width, width)
