"""Chat rendering, truncation and the completion boundary."""

from __future__ import annotations

import pandas as pd

from platform.data.tokenize import (
    LengthLimits,
    fit_lengths,
    load_tokenizer,
    render,
    tokenize_binary_batch,
)


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
    batch = pd.DataFrame({"prompt": ["What is 2 + 2?"], "completion": ["4."], "label": [True]})
    out = tokenize_binary_batch(batch, tiny_model_path, LengthLimits(128, 96, 32))
    ids, prompt_length = out.loc[0, "input_ids"], out.loc[0, "prompt_length"]
    assert tokenizer.decode(ids[prompt_length:]) == "4.<|im_end|>\n"
    assert tokenizer.decode(ids[:prompt_length]).endswith("assistant\n")
    assert bool(out.loc[0, "label"]) is True


def test_mismatched_pairs_put_each_prompt_with_the_next_rows_completion(tiny_model_path):
    tokenizer = load_tokenizer(tiny_model_path)
    batch = pd.DataFrame({"prompt": ["P one?", "P two?", "P three?"],
                          "completion": ["A1.", "A2.", "A3."], "label": [True, False, True]})
    out = tokenize_binary_batch(batch, tiny_model_path, LengthLimits(128, 96, 32),
                                mismatched_pairs=True)
    for row, expected in enumerate(["A2.", "A3.", "A1."]):  # rotated by one, wrapping
        ids = out.loc[row, "mismatched_input_ids"]
        cut = out.loc[row, "mismatched_prompt_length"]
        assert tokenizer.decode(ids[cut:]) == f"{expected}<|im_end|>\n"
        assert ids[:cut] == out.loc[row, "input_ids"][: out.loc[row, "prompt_length"]]
