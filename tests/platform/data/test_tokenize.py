"""Chat rendering, truncation and the completion boundary."""

from __future__ import annotations

import json

import pyarrow as pa

from platform.data import rows
from platform.data.assemble import assemble_binary_batch, assemble_paired_batch
from platform.data.tokenize import (
    LengthLimits,
    encode_batch,
    fit_lengths,
    load_tokenizer,
    over_limits,
    render,
)


def _normal(records: list[dict]) -> pa.Table:
    """Good normal-form rows from a few fields."""
    base = {"source": "s", "line": 1, "kind": rows.BINARY, "prompt": "", "chat": False,
            "completion": "", "label": False, "chosen": "", "rejected": "", "score": None,
            "problem": "", "split": rows.TRAIN, "prompt_hash": 0}
    return pa.Table.from_pylist([base | record for record in records],
                                schema=rows.NORMAL_SCHEMA)


def _binary_inputs(records: list[dict], path: str, limits: LengthLimits,
                   mismatched: bool = False) -> dict[str, list]:
    return assemble_binary_batch(encode_batch(_normal(records), path, limits), limits,
                                 mismatched).to_pydict()


def test_truncation_keeps_the_end_of_the_prompt_and_the_start_of_the_completion():
    limits = LengthLimits(max_length=6, max_prompt_length=4, max_completion_length=3)
    prompt, completion, prompt_cut, completion_cut = fit_lengths(
        [1, 2, 3, 4, 5], [10, 11, 12, 13], limits)
    # completion: first 3 tokens; prompt budget = min(4, 6 - 3) = 3: the last 3 tokens.
    assert completion == [10, 11, 12] and completion_cut
    assert prompt == [3, 4, 5] and prompt_cut


def test_nothing_is_cut_when_it_fits():
    limits = LengthLimits(max_length=10, max_prompt_length=5, max_completion_length=5)
    assert fit_lengths([1, 2], [3], limits) == ([1, 2], [3], False, False)


def test_completion_is_the_assistant_turn_of_the_chat_template(tiny_model_path):
    tokenizer = load_tokenizer(tiny_model_path)
    prompt_text, completion_text = render(tokenizer, "What is 2 + 2?", "4.")
    assert prompt_text.endswith("<|im_start|>assistant\n")
    assert completion_text == "4.<|im_end|>\n"


def test_tokenized_rows_put_the_boundary_at_the_prompt_length(tiny_model_path):
    tokenizer = load_tokenizer(tiny_model_path)
    out = _binary_inputs([{"prompt": "What is 2 + 2?", "completion": "4.", "label": True}],
                         tiny_model_path, LengthLimits(128, 96, 32))
    ids, prompt_length = out["input_ids"][0], out["prompt_length"][0]
    assert tokenizer.decode(ids[prompt_length:]) == "4.<|im_end|>\n"
    assert tokenizer.decode(ids[:prompt_length]).endswith("assistant\n")
    assert out["label"] == [True]


def test_mismatched_pairs_put_each_prompt_with_the_next_rows_completion(tiny_model_path):
    tokenizer = load_tokenizer(tiny_model_path)
    records = [{"prompt": p, "completion": c, "label": lab} for p, c, lab in
               [("P one?", "A1.", True), ("P two?", "A2.", False), ("P three?", "A3.", True)]]
    out = _binary_inputs(records, tiny_model_path, LengthLimits(128, 96, 32), mismatched=True)
    for row, expected in enumerate(["A2.", "A3.", "A1."]):  # rotated by one, wrapping
        ids = out["mismatched_input_ids"][row]
        cut = out["mismatched_prompt_length"][row]
        assert tokenizer.decode(ids[cut:]) == f"{expected}<|im_end|>\n"
        assert ids[:cut] == out["input_ids"][row][: out["prompt_length"][row]]


def test_a_multi_turn_prompt_renders_every_turn_before_the_answer(tiny_model_path):
    tokenizer = load_tokenizer(tiny_model_path)
    turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
             {"role": "user", "content": "What is 2 + 2?"}]
    prompt_text, completion_text = render(tokenizer, turns, "4.")
    assert prompt_text.count("<|im_start|>user") == 2
    assert "Hello!" in prompt_text and prompt_text.endswith("<|im_start|>assistant\n")
    assert completion_text == "4.<|im_end|>\n"
    # A one-turn list renders exactly like the plain prompt (the normal form keeps it plain).
    assert render(tokenizer, turns[-1:], "4.") == render(tokenizer, "What is 2 + 2?", "4.")

    out = _binary_inputs([{"prompt": json.dumps(turns), "chat": True, "completion": "4.",
                           "label": True}], tiny_model_path, LengthLimits(256, 192, 32))
    ids, cut = out["input_ids"][0], out["prompt_length"][0]
    assert ids == tokenizer(prompt_text + completion_text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids[:cut]) == prompt_text
    assert tokenizer.decode(ids[cut:]) == completion_text


def test_stored_ids_fit_any_completion_as_the_full_ids_would():
    limits = LengthLimits(max_length=8, max_prompt_length=5, max_completion_length=4)
    prompt, completion = list(range(10)), list(range(100, 106))
    stored = prompt[-limits.max_prompt_length:], completion[: limits.max_completion_length]
    # The ids are the same; the flags are taken from the full lengths (over_limits).
    assert fit_lengths(*stored, limits)[:2] == fit_lengths(prompt, completion, limits)[:2]
    assert over_limits(10, 6, limits) == fit_lengths(prompt, completion, limits)[2:]
    assert over_limits(3, 4, limits) == (False, False)


def test_pairs_share_the_prompt_fitted_to_the_longer_completion(tiny_model_path):
    tokenizer = load_tokenizer(tiny_model_path)
    limits = LengthLimits(max_length=24, max_prompt_length=20, max_completion_length=8)
    table = encode_batch(_normal([{"kind": rows.PAIRED, "prompt": "Say something nice.",
                                   "chosen": "Thanks!", "rejected": "word " * 30}]),
                         tiny_model_path, limits)
    assert table.column("completion_truncated").to_pylist() == [True]
    out = assemble_paired_batch(table, limits).to_pydict()
    cut = out["prompt_length"][0]
    chosen, rejected = out["chosen_input_ids"][0], out["rejected_input_ids"][0]
    assert chosen[:cut] == rejected[:cut]
    assert len(rejected) == limits.max_length  # prompt budget 24 - 8 = 16, plus 8
    assert tokenizer.decode(chosen[cut:]) == "Thanks!<|im_end|>\n"
