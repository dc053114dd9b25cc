"""Chat-template rendering and tokenization of normal-form rows, run inside ``map_batches``.

A prompt is rendered as a one-turn user conversation with the generation prompt; the
completion is whatever the template adds for the assistant's turn (its text plus the
end-of-turn marker), so the model learns to end its answer the way it will be asked to at
generation time. Prompt and completion are tokenized separately: the boundary between them
is then exact, and only completion tokens are scored.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import pandas as pd

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LengthLimits:
    max_length: int  # prompt + completion, tokens
    max_prompt_length: int
    max_completion_length: int


@functools.lru_cache(maxsize=4)
def load_tokenizer(path: str, trust_remote_code: bool = False):
    """The tokenizer at ``path``, loaded once per process, with a pad token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ValueError(
                f"the tokenizer of {path} has neither a pad nor an eos token; add one "
                "(tokenizer.add_special_tokens) and save it before training."
            )
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def render(tokenizer, prompt: str, completion: str) -> tuple[str, str]:
    """(prompt text, completion text) as the model sees them."""
    if not getattr(tokenizer, "chat_template", None):
        return prompt, completion + (tokenizer.eos_token or "")
    user = [{"role": "user", "content": prompt}]
    prompt_text = tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
    full_text = tokenizer.apply_chat_template(
        user + [{"role": "assistant", "content": completion}], tokenize=False
    )
    if full_text.startswith(prompt_text):
        return prompt_text, full_text[len(prompt_text):]
    # A template that rewrites earlier turns once an answer follows: fall back to plain EOS.
    return prompt_text, completion + (tokenizer.eos_token or "")


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def fit_lengths(
    prompt_ids: list[int], completion_ids: list[int], limits: LengthLimits
) -> tuple[list[int], list[int], bool, bool]:
    """Truncate: the completion keeps its start, the prompt keeps its end (the question
    closest to the answer). Returns (prompt_ids, completion_ids, prompt_cut, completion_cut).
    """
    completion_cut = len(completion_ids) > limits.max_completion_length
    completion_ids = completion_ids[: limits.max_completion_length]
    prompt_budget = min(limits.max_prompt_length, limits.max_length - len(completion_ids))
    prompt_cut = len(prompt_ids) > prompt_budget
    if prompt_cut:
        prompt_ids = prompt_ids[len(prompt_ids) - prompt_budget:]
    return prompt_ids, completion_ids, prompt_cut, completion_cut


def tokenize_binary_batch(
    batch: pd.DataFrame, tokenizer_path: str, limits: LengthLimits,
    mismatched_pairs: bool = False,
) -> pd.DataFrame:
    """Normal-form binary rows to ``input_ids``, ``prompt_length``, ``label``.

    With ``mismatched_pairs`` each row also gets ``mismatched_input_ids`` and
    ``mismatched_prompt_length``: its prompt followed by the completion of the next row of
    the (shuffled) batch, the unrelated completion y' of KTO's reference point. A batch of
    one row pairs the row with itself.
    """
    tokenizer = load_tokenizer(tokenizer_path)
    out = {"input_ids": [], "prompt_length": [], "label": [], "prompt_truncated": [],
           "completion_truncated": []}
    prompts, completions = list(batch["prompt"]), list(batch["completion"])
    for prompt, completion, label in zip(prompts, completions, batch["label"], strict=True):
        ids, prompt_length, prompt_cut, completion_cut = _encode_row(
            tokenizer, prompt, completion, limits)
        out["input_ids"].append(ids)
        out["prompt_length"].append(prompt_length)
        out["label"].append(bool(label))
        out["prompt_truncated"].append(prompt_cut)
        out["completion_truncated"].append(completion_cut)
    if mismatched_pairs:
        others = completions[1:] + completions[:1]
        encoded = [_encode_row(tokenizer, p, c, limits) for p, c in zip(prompts, others,
                                                                          strict=True)]
        out["mismatched_input_ids"] = [ids for ids, *_ in encoded]
        out["mismatched_prompt_length"] = [length for _, length, *_ in encoded]
    if "weight" in batch.columns:  # per-row loss weights travel with their rows
        out["weight"] = [float(w) for w in batch["weight"]]
    return pd.DataFrame(out)


def _encode_row(tokenizer, prompt: str, completion: str,
                limits: LengthLimits) -> tuple[list[int], int, bool, bool]:
    prompt_text, completion_text = render(tokenizer, prompt, completion)
    prompt_ids, completion_ids, prompt_cut, completion_cut = fit_lengths(
        _encode(tokenizer, prompt_text), _encode(tokenizer, completion_text), limits
    )
    return prompt_ids + completion_ids, len(prompt_ids), prompt_cut, completion_cut


def tokenize_paired_batch(
    batch: pd.DataFrame, tokenizer_path: str, limits: LengthLimits
) -> pd.DataFrame:
    """Normal-form paired rows to ``chosen_input_ids``, ``rejected_input_ids`` and the
    shared ``prompt_length`` (both sides keep the same prompt tokens)."""
    tokenizer = load_tokenizer(tokenizer_path)
    out = {"chosen_input_ids": [], "rejected_input_ids": [], "prompt_length": [],
           "prompt_truncated": [], "completion_truncated": []}
    for prompt, chosen, rejected in zip(
        batch["prompt"], batch["chosen"], batch["rejected"], strict=True
    ):
        prompt_text, chosen_text = render(tokenizer, prompt, chosen)
        _, rejected_text = render(tokenizer, prompt, rejected)
        chosen_ids = _encode(tokenizer, chosen_text)
        rejected_ids = _encode(tokenizer, rejected_text)
        longer = chosen_ids if len(chosen_ids) >= len(rejected_ids) else rejected_ids
        prompt_ids, _, prompt_cut, _ = fit_lengths(_encode(tokenizer, prompt_text), longer, limits)
        cut = limits.max_completion_length
        out["chosen_input_ids"].append(prompt_ids + chosen_ids[:cut])
        out["rejected_input_ids"].append(prompt_ids + rejected_ids[:cut])
        out["prompt_length"].append(len(prompt_ids))
        out["prompt_truncated"].append(prompt_cut)
        out["completion_truncated"].append(max(len(chosen_ids), len(rejected_ids)) > cut)
    return pd.DataFrame(out)
