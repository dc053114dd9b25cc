"""Chat-template rendering and tokenization of normal-form rows, run inside ``map_batches``.

A prompt, plain text or a list of turns, is rendered as a conversation with the generation
prompt; the completion is whatever the template adds for the assistant's turn (its text
plus the end-of-turn marker), so the model learns to end its answer the way it will be asked
to at generation time. Prompt and completion are tokenized separately: the boundary between
them is then exact, and only completion tokens are scored.

Each input row is tokenized once (:func:`encode_batch`), before balancing repeats rows. Its
ids are stored cut to the limits that do not depend on the partner completion (the prompt's
last ``max_prompt_length`` tokens, each completion's first ``max_completion_length``), so
that fitting them with any completion later (``platform.data.assemble``) gives exactly what
fitting the full ids would.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass

import pyarrow as pa

from platform.data.cancellation import interrupts_deferred
from platform.data.formats import PAIRED

logger = logging.getLogger(__name__)

IDS = pa.list_(pa.int32())
TOKEN_FIELDS = [pa.field("prompt_ids", IDS), pa.field("completion_ids", IDS),
                pa.field("chosen_ids", IDS), pa.field("rejected_ids", IDS),
                pa.field("prompt_truncated", pa.bool_()),
                pa.field("completion_truncated", pa.bool_())]

Prompt = str | list[dict[str, str]]


@dataclass(frozen=True)
class LengthLimits:
    max_length: int  # prompt + completion, tokens
    max_prompt_length: int
    max_completion_length: int


@functools.lru_cache(maxsize=4)
def load_tokenizer(path: str, trust_remote_code: bool = False):  # noqa: ANN201 (HF type)
    """The tokenizer at ``path``, loaded once per process, with a pad token.

    Loading imports transformers (and through it torch) on first use, often inside a Ray
    Data task that Ray may cancel: the import runs whole (``platform.data.cancellation``).
    """
    with interrupts_deferred():
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


def _turns(prompt: Prompt) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def render_prompt(tokenizer: object, prompt: Prompt) -> str:
    """The prompt as the model sees it, ending where the assistant's answer begins."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(_turns(prompt), add_generation_prompt=True,
                                             tokenize=False)
    if isinstance(prompt, str):
        return prompt
    # No template: the turns as a transcript that hands over to the assistant.
    lines = [f"{turn['role'].capitalize()}: {turn['content']}" for turn in prompt]
    return "\n\n".join(lines) + "\n\nAssistant: "


def render_completion(tokenizer: object, prompt: Prompt, prompt_text: str,
                      completion: str) -> str:
    """The assistant turn as the template writes it after ``prompt_text``."""
    eos = tokenizer.eos_token or ""
    if not getattr(tokenizer, "chat_template", None):
        return completion + eos
    full_text = tokenizer.apply_chat_template(
        _turns(prompt) + [{"role": "assistant", "content": completion}], tokenize=False)
    if full_text.startswith(prompt_text):
        return full_text[len(prompt_text):]
    # A template that rewrites earlier turns once an answer follows: fall back to plain EOS.
    return completion + eos


def render(tokenizer: object, prompt: Prompt, completion: str) -> tuple[str, str]:
    """(prompt text, completion text) as the model sees them."""
    prompt_text = render_prompt(tokenizer, prompt)
    return prompt_text, render_completion(tokenizer, prompt, prompt_text, completion)


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


def over_limits(prompt_length: int, completion_length: int,
                limits: LengthLimits) -> tuple[bool, bool]:
    """(prompt cut, completion cut): what :func:`fit_lengths` would cut for these lengths."""
    completion_cut = completion_length > limits.max_completion_length
    kept = min(completion_length, limits.max_completion_length)
    return prompt_length > min(limits.max_prompt_length, limits.max_length - kept), completion_cut


def encode_batch(batch: pa.Table, tokenizer_path: str, limits: LengthLimits) -> pa.Table:
    """Normal-form rows plus their token ids and truncation flags (see the module doc).

    Bad rows get empty ids. A pair's flags come from its longer completion.
    """
    tokenizer = load_tokenizer(tokenizer_path)
    texts, slots = _rendered_texts(batch, tokenizer)
    encoded = encode_texts(tokenizer, texts) if texts else []
    columns: dict[str, list] = {f.name: [] for f in TOKEN_FIELDS}
    for slot in slots:
        ids = {name: encoded[index] for name, index in slot.items()}
        prompt = ids.get("prompt", [])
        answers = [ids[name] for name in ("completion", "chosen", "rejected") if name in ids]
        longest = max((len(answer) for answer in answers), default=0)
        prompt_cut, completion_cut = over_limits(len(prompt), longest, limits)
        columns["prompt_ids"].append(prompt[-limits.max_prompt_length:] if prompt else [])
        for name in ("completion", "chosen", "rejected"):
            columns[f"{name}_ids"].append(ids.get(name, [])[: limits.max_completion_length])
        columns["prompt_truncated"].append(prompt_cut)
        columns["completion_truncated"].append(completion_cut)
    for spec in TOKEN_FIELDS:
        batch = batch.append_column(spec, pa.array(columns[spec.name], spec.type))
    return batch


def encode_example(tokenizer: object, prompt: Prompt, completion: str,
                   limits: LengthLimits) -> tuple[list[int], int]:
    """One example as the pipeline makes it: (prompt + completion token ids, prompt length),
    rendered with the chat template and truncated to ``limits``."""
    prompt_text, completion_text = render(tokenizer, prompt, completion)
    prompt_ids, completion_ids = encode_texts(tokenizer, [prompt_text, completion_text])
    prompt_ids, completion_ids, _, _ = fit_lengths(prompt_ids, completion_ids, limits)
    return prompt_ids + completion_ids, len(prompt_ids)


def encode_texts(tokenizer: object, texts: list[str]) -> list[list[int]]:
    """Token ids of many texts in one call, without special tokens."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # a fast tokenizer: its Rust core directly, a fifth faster
        return [encoding.ids for encoding in backend.encode_batch(texts,
                                                                  add_special_tokens=False)]
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def _rendered_texts(batch: pa.Table,
                    tokenizer: object) -> tuple[list[str], list[dict[str, int]]]:
    """All texts of a batch in one list (one tokenizer call) and, per row, where its
    prompt and completions sit in that list."""
    texts: list[str] = []
    slots: list[dict[str, int]] = []
    values = {name: batch.column(name).to_pylist()
              for name in ("kind", "prompt", "chat", "completion", "chosen", "rejected",
                           "problem")}
    for row in range(batch.num_rows):
        slot: dict[str, int] = {}
        if not values["problem"][row]:
            prompt = values["prompt"][row]
            prompt = json.loads(prompt) if values["chat"][row] else prompt
            prompt_text = render_prompt(tokenizer, prompt)
            names = ("chosen", "rejected") if values["kind"][row] == PAIRED else ("completion",)
            slot["prompt"] = len(texts)
            texts.append(prompt_text)
            for name in names:
                slot[name] = len(texts)
                texts.append(render_completion(tokenizer, prompt, prompt_text,
                                               values[name][row]))
        slots.append(slot)
    return texts, slots


def prepared_schema() -> pa.Schema:
    """The schema of tokenized normal rows: the normal form plus :data:`TOKEN_FIELDS`."""
    from platform.data.rows import NORMAL_SCHEMA

    return pa.schema(list(NORMAL_SCHEMA) + TOKEN_FIELDS)
