"""The Ray Data stream: counts, balance, bad rows and data that cannot serve an objective."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import cloudpickle
import pytest

from objectives.base import DataShape
from platform.config import DataConfig
from platform.data.pipeline import build_stream, read_rows, summarize, total_steps
from tests.conftest import SHARED_DATA

# Ray workers cannot import test modules: what they run from here travels by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def _binary(i: int, label: bool) -> dict:
    return {"prompt": f"question {i}", "completion": f"answer {i}", "label": label}


def test_oversampling_balances_classes_to_one_to_one(ray_cluster, tmp_path, tiny_model_path):
    records = [_binary(i, i % 4 == 0) for i in range(40)]  # 10 up, 30 down
    data = DataConfig(train=[str(_write_jsonl(tmp_path / "f.jsonl", records))],
                      max_length=64, max_prompt_length=32, max_completion_length=16)
    stream, summary = build_stream(data, DataShape.BINARY, tiny_model_path, seed=3,
                                   objective="bco")
    rows = stream.take_all()
    labels = [bool(row["label"]) for row in rows]
    assert (summary.binary_up, summary.binary_down) == (10, 30)
    assert summary.train_rows == len(rows) == 60
    assert labels.count(True) == labels.count(False) == 30
    assert set(rows[0]) == {"input_ids", "prompt_length", "label"}  # no string column


def test_pairs_feed_binary_objectives_as_up_and_down_rows(ray_cluster, tmp_path,
                                                          tiny_model_path):
    pairs = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"}
             for i in range(6)]
    data = DataConfig(train=[str(_write_jsonl(tmp_path / "p.jsonl", pairs))])
    stream, summary = build_stream(data, DataShape.BINARY, tiny_model_path, seed=0,
                                   objective="bco")
    labels = [bool(row["label"]) for row in stream.take_all()]
    assert summary.pairs == 6
    assert labels.count(True) == labels.count(False) == 6


def test_paired_objectives_get_pairs_and_refuse_binary_data(ray_cluster, tmp_path,
                                                            tiny_model_path):
    pairs = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"}
             for i in range(4)]
    data = DataConfig(train=[str(_write_jsonl(tmp_path / "p.jsonl", pairs))])
    stream, _ = build_stream(data, DataShape.PAIRED, tiny_model_path, seed=0, objective="dpo")
    assert set(stream.take(1)[0]) == {"chosen_input_ids", "rejected_input_ids",
                                      "prompt_length"}

    binary = DataConfig(train=[str(_write_jsonl(tmp_path / "b.jsonl",
                                                [_binary(0, True), _binary(1, False)]))])
    with pytest.raises(ValueError, match="objective 'dpo' trains on paired rows"):
        build_stream(binary, DataShape.PAIRED, tiny_model_path, seed=0, objective="dpo")


def test_one_class_only_is_refused_for_objectives_that_need_both(ray_cluster, tmp_path,
                                                                  tiny_model_path):
    data = DataConfig(train=[str(_write_jsonl(tmp_path / "up.jsonl",
                                              [_binary(i, True) for i in range(4)]))])
    with pytest.raises(ValueError, match="needs both thumbs-up and thumbs-down"):
        build_stream(data, DataShape.BINARY, tiny_model_path, seed=0, objective="bco")


def test_skip_mode_counts_every_bad_row_by_reason(ray_cluster, tmp_path):
    path = _write_jsonl(tmp_path / "mixed.jsonl", [
        _binary(0, True), "{broken", {"prompt": "p", "completion": "", "label": False},
        {"prompt": "p", "completion": "c", "label": "up"}, _binary(1, False),
    ])
    summary = summarize(read_rows(DataConfig(train=[str(path)], on_bad_row="skip")))
    assert summary.input_rows == 5 and summary.bad_rows == 3
    assert (summary.binary_up, summary.binary_down) == (1, 1)
    assert sorted(row["line"] for row in summary.quarantine) == [2, 3, 4]


def test_strict_mode_names_file_and_line(ray_cluster, tmp_path):
    path = _write_jsonl(tmp_path / "bad.jsonl", [_binary(0, True), {"prompt": "p"}])
    with pytest.raises(Exception, match=r"bad\.jsonl:2: missing fields"):
        summarize(read_rows(DataConfig(train=[str(path)])))


def _hh_usable(record: dict) -> bool:
    """An HH-RLHF pair that converts: both dialogues share everything before the final
    ``Assistant:`` turn and both final replies hold text."""
    marker = "\n\nAssistant:"
    chosen, rejected = record["chosen"], record["rejected"]
    cut_chosen, cut_rejected = chosen.rfind(marker), rejected.rfind(marker)
    return (chosen[:cut_chosen] == rejected[:cut_rejected]
            and bool(chosen[cut_chosen + len(marker):].strip())
            and bool(rejected[cut_rejected + len(marker):].strip()))


def test_real_compressed_file_is_read_in_place_and_every_row_accounted_for(ray_cluster,
                                                                           tiny_model_path):
    source = SHARED_DATA / "feedback" / "hh-rlhf" / "harmless-base" / "test.jsonl.gz"
    if not source.exists():
        pytest.skip(f"shared data not present at {source}")
    with gzip.open(source, "rt") as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    usable = sum(_hh_usable(record) for record in records)
    data = DataConfig(train=[str(source)], on_bad_row="skip")
    stream, summary = build_stream(data, DataShape.BINARY, tiny_model_path, seed=0,
                                   objective="bco")
    # Each HH-RLHF pair becomes a thumbs-up (chosen) and a thumbs-down (rejected) row; the
    # rest are bad rows by reason (dialogues that differ earlier, an empty final reply).
    assert summary.input_rows == len(records) == 2312
    assert summary.pairs == usable and summary.bad_rows == len(records) - usable
    assert set(summary.problems) == {"chosen and rejected differ before the final reply",
                                     "field 'chosen' is empty"}
    assert (summary.up_rows, summary.down_rows) == (usable, usable)
    labels = [bool(row["label"]) for row in stream.select_columns(["label"]).take_all()]
    assert labels.count(True) == labels.count(False) == usable == summary.train_rows // 2


def test_total_steps_and_too_little_data():
    assert total_steps(100, num_workers=2, micro_batch_size=8, grad_accum_steps=2,
                       epochs=3, max_steps=None) == 9  # 50 rows -> 6 batches -> 3 steps
    assert total_steps(100, 2, 8, 2, 3, max_steps=4) == 4
    with pytest.raises(ValueError, match="fewer than one global batch"):
        total_steps(10, 2, 8, 1, 1, None)


class _LengthWeighter:
    """Weights thumbs-down rows by prompt length: simple enough to check by hand."""

    def __call__(self, prompts: list[str], labels: list[bool]) -> list[float]:
        return [1.0 if label else float(len(prompt)) for prompt, label in zip(prompts, labels,
                                                                                strict=True)]


def test_row_weights_learned_from_a_sample_travel_with_their_rows(ray_cluster, tmp_path,
                                                                  tiny_model_path):
    records = [{"prompt": "q" * (i + 1), "completion": f"a{i}", "label": i % 2 == 0}
               for i in range(6)]
    data = DataConfig(train=[str(_write_jsonl(tmp_path / "w.jsonl", records))])
    seen = []

    def fit(sample):
        seen.append(sorted(zip(sample.prompts, sample.labels, strict=True)))
        return _LengthWeighter()

    stream, _ = build_stream(data, DataShape.BINARY, tiny_model_path, seed=0,
                             objective="bco", fit_row_weights=fit)
    rows = stream.take_all()
    assert seen == [sorted((r["prompt"], r["label"]) for r in records)]  # the whole input
    down_weights = sorted(row["weight"] for row in rows if not row["label"])
    assert down_weights == [2.0, 4.0, 6.0]  # prompts "qq", "qqqq", "qqqqqq"
    assert all(row["weight"] == 1.0 for row in rows if row["label"])
