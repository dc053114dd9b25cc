"""Class balance modes: oversample, undersample, weight and none."""

from __future__ import annotations

import json
import sys
from collections import Counter

import cloudpickle
import pytest
import ray.data

from objectives.base import DataShape
from platform.config import DataConfig
from platform.data.balance import balance
from platform.data.pipeline import build_stream

cloudpickle.register_pickle_by_value(sys.modules[__name__])

UP, DOWN = 10, 27  # 27 = 2 * 10 + 7: oversampling needs two copies and a remainder of 7


def _rows(extra: dict | None = None) -> ray.data.Dataset:
    items = [{"prompt": f"q{i}", "label": i < UP, **(extra or {})} for i in range(UP + DOWN)]
    return ray.data.from_items(items)


def test_oversampling_repeats_the_minority_to_exactly_the_majority(ray_cluster):
    stream, rows = balance(_rows(), UP, DOWN, "oversample", seed=1)
    taken = stream.take_all()
    per_class = Counter(bool(row["label"]) for row in taken)
    assert abs(per_class[True] - per_class[False]) <= 1 and per_class[False] == DOWN
    assert rows == len(taken) == 2 * DOWN
    copies = Counter(row["prompt"] for row in taken if row["label"])
    assert sorted(Counter(copies.values()).items()) == [(2, UP - 7), (3, 7)]


def test_undersampling_keeps_a_subset_of_the_majority_the_size_of_the_minority(ray_cluster):
    stream, rows = balance(_rows(), UP, DOWN, "undersample", seed=1)
    taken = stream.take_all()
    up = [row["prompt"] for row in taken if row["label"]]
    down = [row["prompt"] for row in taken if not row["label"]]
    assert len(up) == len(down) == UP == rows // 2
    assert len(set(down)) == UP and set(down) <= {f"q{i}" for i in range(UP, UP + DOWN)}


def test_weights_make_both_classes_weigh_the_same_and_multiply_row_weights(ray_cluster):
    stream, rows = balance(_rows(), UP, DOWN, "weight", seed=1)
    taken = stream.take_all()
    sums = Counter()
    for row in taken:
        sums[bool(row["label"])] += row["weight"]
    assert rows == len(taken) == UP + DOWN
    assert sums[True] == pytest.approx(sums[False]) == pytest.approx((UP + DOWN) / 2)

    weighted, _ = balance(_rows({"weight": 3.0}), UP, DOWN, "weight", seed=1)
    by_prompt = {row["prompt"]: row["weight"] for row in weighted.take_all()}
    assert by_prompt["q0"] == pytest.approx(3.0 * (UP + DOWN) / (2 * UP))
    assert by_prompt[f"q{UP}"] == pytest.approx(3.0 * (UP + DOWN) / (2 * DOWN))


def test_none_keeps_the_rows_as_they_are(ray_cluster):
    stream, rows = balance(_rows(), UP, DOWN, "none", seed=1)
    assert rows == stream.count() == UP + DOWN


def test_the_weight_mode_reaches_the_trainer_columns(ray_cluster, tmp_path, tiny_model_path):
    path = tmp_path / "f.jsonl"
    path.write_text("".join(
        json.dumps({"prompt": f"q{i}", "completion": f"a{i}", "label": i < 3}) + "\n"
        for i in range(9)))
    data = DataConfig(train=[str(path)], balance="weight")
    stream, summary = build_stream(data, DataShape.BINARY, tiny_model_path, seed=0,
                                   objective="bco")
    rows = stream.take_all()
    assert set(rows[0]) == {"input_ids", "prompt_length", "label", "weight"}
    assert summary.train_rows == len(rows) == 9
    up = sum(row["weight"] for row in rows if row["label"])
    down = sum(row["weight"] for row in rows if not row["label"])
    assert up == pytest.approx(down) == pytest.approx(4.5)  # 3 x 1.5 and 6 x 0.75
