"""Smoke test of the side-by-side benchmark (bench/compare): one tiny step per system.

The harness itself runs outside the test suite (bench/README.md); this checks that it still
runs end to end on the tiny model: the platform and the current TRL each train one step and
report throughput, memory and utilisation, and TRL's last BCO release agrees with the
platform's BCE loss on an identical batch.
"""

from __future__ import annotations

import json

import pytest

from bench.compare import __main__ as harness
from bench.compare import parity, report


@pytest.mark.slow
def test_one_step_per_system_reports_throughput_memory_and_utilisation(tmp_path):
    results, plot = tmp_path / "compare.jsonl", tmp_path / "compare.png"
    code = harness.main(["--objectives", "dpo", "--steps", "1", "--repeats", "1",
                         "--no-parity", "--results", str(results), "--plot", str(plot)])
    assert code == 0

    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert [record["system"] for record in records] == ["platform", "trl"]
    for record in records:
        assert record["exit_code"] == 0, record.get("error")
        assert len(record["step_tokens_per_s"]) == 1 and record["tokens_per_s"] > 0
        assert record["peak_rss_gib"] > 0.1 and record["matmul_flops_per_s"] > 1e8
        assert 0.05 < record["peak_pss_gib"] <= record["peak_rss_gib"]
        assert record["step_loss"] and record["step_loss"][0] == pytest.approx(0.6931, abs=1e-3)
    (row,) = report.summarize(records)
    assert row["ratio"]["tokens_per_s"] > 0
    assert 0 < row["platform"]["mfu"] < 1 and 0 < row["trl"]["mfu"] < 1
    assert "| dpo | tiny | live |" in report.markdown_table([row])
    assert plot.stat().st_size > 1000


@pytest.mark.slow
def test_bce_loss_and_rewards_match_trl_on_an_identical_batch(tmp_path):
    results = tmp_path / "parity.jsonl"
    assert parity.main(["--objectives", "bce", "--batches", "1", "--results", str(results)]) == 0

    (record,) = [json.loads(line) for line in results.read_text().splitlines()]
    (batch,) = record["batches"]
    assert record["agree"] and batch["agree"]
    assert batch["platform"]["loss"] == pytest.approx(batch["trl"]["loss"], abs=1e-5)
    # The noisy reference makes the rewards non-zero, so the agreement is not log 2 == log 2.
    assert abs(batch["platform"]["rewards_chosen"]) > 1e-4
    assert batch["platform"]["loss"] != pytest.approx(0.693147, abs=1e-4)
