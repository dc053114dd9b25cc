"""Scored rows (HelpSteer2 style): thumbs-up from 4, pairs by the higher score, ties out."""

from __future__ import annotations

import json
import sys

import cloudpickle

from objectives.base import DataShape
from platform.config import DataConfig
from platform.data.pipeline import build_stream
from platform.data.scored import NO_PAIR, OUTSIDE_PAIR
from platform.data.tokenize import load_tokenizer

cloudpickle.register_pickle_by_value(sys.modules[__name__])

# prompt -> helpfulness of its responses
SCORES = {"p0": [4, 2], "p1": [3, 1], "p2": [4, 4], "p3": [4], "p4": [4, 3, 2]}


def _scored_file(tmp_path) -> str:
    path = tmp_path / "helpsteer.jsonl"
    rows = [{"prompt": prompt, "response": f"{prompt} answer scored {score}",
             "helpfulness": score, "correctness": 3, "verbosity": 1}
            for prompt, scores in SCORES.items() for score in scores]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def test_binary_rows_keep_every_response_of_the_prompts_that_make_a_pair(
        ray_cluster, tmp_path, tiny_model_path):
    data = DataConfig(train=[_scored_file(tmp_path)], balance="none")
    stream, summary = build_stream(data, DataShape.BINARY, tiny_model_path, seed=0,
                                   objective="bco")
    # p2 (a tie) and p3 (one response) make no pair: their 3 rows are dropped; the 7
    # responses of p0, p1, p4 stay, thumbs-up where helpfulness is 4: one of p0, one of p4.
    assert summary.input_rows == 10
    assert summary.dropped == {NO_PAIR: 3}
    assert summary.scored == 7 and (summary.up_rows, summary.down_rows) == (2, 5)
    assert summary.input_rows == summary.good_rows + summary.bad_rows + summary.dropped_rows
    labels = [bool(row["label"]) for row in stream.take_all()]
    assert sorted(labels) == [False] * 5 + [True] * 2


def test_pairs_take_the_highest_against_the_lowest_score(ray_cluster, tmp_path,
                                                         tiny_model_path):
    data = DataConfig(train=[_scored_file(tmp_path)])
    stream, summary = build_stream(data, DataShape.PAIRED, tiny_model_path, seed=0,
                                   objective="dpo")
    assert summary.train_pairs == summary.train_rows == 3  # p0, p1 and p4
    assert summary.dropped == {NO_PAIR: 3, OUTSIDE_PAIR: 1}  # p4's middle response
    assert summary.scored == 6
    tokenizer = load_tokenizer(tiny_model_path)
    pairs = set()
    for row in stream.take_all():
        cut = row["prompt_length"]
        chosen = tokenizer.decode(row["chosen_input_ids"][cut:]).removesuffix("<|im_end|>\n")
        rejected = tokenizer.decode(row["rejected_input_ids"][cut:]).removesuffix(
            "<|im_end|>\n")
        pairs.add((chosen, rejected))
    assert pairs == {("p0 answer scored 4", "p0 answer scored 2"),
                     ("p1 answer scored 3", "p1 answer scored 1"),
                     ("p4 answer scored 4", "p4 answer scored 2")}
