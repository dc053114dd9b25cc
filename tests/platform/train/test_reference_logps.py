"""Precomputed reference log-probs: the same losses as the live reference, a cache that a
second run hits, and the batch-inference pass's pieces on their own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from objectives import metrics
from objectives.base import DataShape
from platform.config_loading import load_config
from platform.train import reference_logps as ref
from platform.train.launcher import launch

STEPS = 3
COMMON = ["objective=bco", "recipe=tiny", f"train.max_steps={STEPS}",
          "train.micro_batch_size=4", "resources.num_workers=2"]


def _losses(uri: str, run_id: str) -> list[float]:
    history = MlflowClient(uri).get_metric_history(run_id, metrics.LOSS)
    return [m.value for m in sorted(history, key=lambda m: m.step)]


def _run(folder: Path, *words: str):
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    result = launch(load_config([*COMMON, *words, f"tracking.uri={uri}",
                                 f"train.output_dir={folder}/out"]))
    return uri, result.run_id


@pytest.fixture(scope="module")
def live_losses(ray_cluster, tmp_path_factory) -> list[float]:
    uri, run_id = _run(tmp_path_factory.mktemp("live"))
    return _losses(uri, run_id)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("reference_cache")


@pytest.mark.slow
def test_precomputed_under_zero3_gives_the_live_losses_and_fills_the_cache(
        live_losses, cache_dir, tmp_path):
    uri, run_id = _run(tmp_path, "model.reference_logps=precomputed", "train.zero_stage=3",
                       f"model.reference_cache_dir={cache_dir}")
    assert len(live_losses) == STEPS
    assert _losses(uri, run_id) == pytest.approx(live_losses, abs=1e-5)
    tags = MlflowClient(uri).get_run(run_id).data.tags
    assert tags["reference_logps.cache"] == "miss"
    (seconds,) = MlflowClient(uri).get_metric_history(run_id, "reference/precompute_s")
    assert seconds.step == 0 and seconds.value > 0
    meta = json.loads((Path(tags["reference_logps.folder"]) / ref.META_FILE).read_text())
    assert meta["rows"] > 0 and meta["files"]


@pytest.mark.slow
def test_a_second_run_on_the_same_data_and_reference_hits_the_cache(
        live_losses, cache_dir, tmp_path):
    if not any(cache_dir.iterdir()):
        pytest.skip("needs the cache written by the previous test")
    uri, run_id = _run(tmp_path, "model.reference_logps=precomputed",
                       f"model.reference_cache_dir={cache_dir}")
    tags = MlflowClient(uri).get_run(run_id).data.tags
    assert tags["reference_logps.cache"] == "hit"
    assert _losses(uri, run_id) == pytest.approx(live_losses, abs=1e-5)


def test_the_cache_key_changes_with_seed_reference_and_precision():
    key = ref.CacheKey("f" * 64, 42, ("input_ids", "prompt_length", "label"), "abc", False, None)
    assert key.digest() == ref.CacheKey(*key.__dict__.values()).digest()
    changed = [
        ref.CacheKey("e" * 64, 42, key.columns, "abc", False, None),
        ref.CacheKey(key.fingerprint, 7, key.columns, "abc", False, None),
        ref.CacheKey(key.fingerprint, 42, key.columns, "abd", False, None),
        ref.CacheKey(key.fingerprint, 42, key.columns, "abc", True, None),
        ref.CacheKey(key.fingerprint, 42, key.columns, "abc", False, "udm:{}"),
    ]
    assert len({key.digest(), *(other.digest() for other in changed)}) == 6


def test_model_identity_follows_the_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 10)
    first = ref.model_identity(str(tmp_path))
    (tmp_path / "model.safetensors").write_bytes(b"\x01" * 10)
    assert ref.model_identity(str(tmp_path)) != first
    assert ref.model_identity("org/hub-model") == "org/hub-model"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json or weights"):
        ref.model_identity(str(tmp_path / "empty"))


def test_scoring_plan_leaves_a_cpu_to_the_stream():
    assert ref.plan_scoring({"CPU": 2.0}, use_gpu=False) == ref.ScoringPlan(1, 1.0, False, 2)
    plan = ref.plan_scoring({"CPU": 16.0}, use_gpu=False)
    assert plan.actors * plan.cpus_per_actor <= 15 and plan.actors == 7
    assert ref.plan_scoring({"CPU": 8.0, "GPU": 4.0}, use_gpu=True).actors == 4


def test_the_scorer_matches_the_live_reference_row_for_row(tiny_model_path):
    """The actor's scores equal completion_logps on the trainer's own collated batch."""
    import numpy as np
    import pyarrow as pa
    import torch

    from platform.data.tokenize import IDS
    from platform.models.loading import load_causal_lm
    from platform.train.batches import ADAPTERS
    from platform.train.scoring import TokenScorer, completion_logps

    rows = pa.table({"input_ids": pa.array([[5, 6, 7, 8, 9], [5, 6, 10]], IDS),
                     "prompt_length": pa.array([2, 1], pa.int64()),
                     "label": pa.array([True, False]),
                     "mismatched_input_ids": pa.array([[5, 6, 10], [5, 7, 8, 9]], IDS),
                     "mismatched_prompt_length": pa.array([2, 1], pa.int64())})
    scorer = ref.ReferenceScorer(tiny_model_path, DataShape.BINARY, pad_token_id=0,
                                 bf16=False, use_gpu=False, threads=1,
                                 trust_remote_code=False)
    scored = scorer(rows)
    model = TokenScorer(load_causal_lm(tiny_model_path, False)).eval()
    numpy_rows = {n: rows.column(n).to_numpy(zero_copy_only=False) for n in rows.column_names}
    sequences, extras = ADAPTERS[DataShape.BINARY].collate(numpy_rows, 0, "packed")
    with torch.no_grad():
        expected, _ = completion_logps(model, sequences)
        mismatched, _ = completion_logps(model, extras["mismatched"])
    np.testing.assert_allclose(scored.column(ref.BINARY_REFERENCE).to_numpy(),
                               expected.numpy(), atol=1e-6)
    np.testing.assert_allclose(scored.column(ref.MISMATCHED_REFERENCE).to_numpy(),
                               mismatched.numpy(), atol=1e-6)
    assert scored.column_names[:len(rows.column_names)] == rows.column_names
