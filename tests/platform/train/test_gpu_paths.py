"""The GPU paths of training: bf16, NCCL, ZeRO-3, precomputed reference log-probs and
FlashAttention-2. Marked ``gpu``: they run where CUDA is available and are skipped on CPU
machines (tests/conftest.py)."""

from __future__ import annotations

import importlib.util
import math

import pytest
from mlflow.tracking import MlflowClient

from objectives import metrics
from platform.config_loading import load_config
from platform.train.launcher import launch

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

STEPS = 3
COMMON = ["objective=bco", "recipe=tiny", f"train.max_steps={STEPS}",
          "train.micro_batch_size=4", "resources.use_gpu=true"]


def _history(uri: str, run_id: str, key: str) -> list[float]:
    found = MlflowClient(uri).get_metric_history(run_id, key)
    return [m.value for m in sorted(found, key=lambda m: m.step)]


def _run(tmp_path, *words: str):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = launch(load_config([*COMMON, *words, f"tracking.uri={uri}",
                                 f"train.output_dir={tmp_path}/out"]))
    return uri, result.run_id


@pytest.fixture(scope="module")
def bf16_live(ray_cluster, tmp_path_factory):
    return _run(tmp_path_factory.mktemp("bf16"))


def test_bf16_training_over_nccl_logs_device_memory(bf16_live):
    uri, run_id = bf16_live
    losses = _history(uri, run_id, metrics.LOSS)
    assert len(losses) == STEPS and all(math.isfinite(v) for v in losses)
    assert _history(uri, run_id, metrics.PEAK_DEVICE_GIB)[-1] > 0
    params = MlflowClient(uri).get_run(run_id).data.params
    assert params.get("train.precision") in ("auto", "bf16")


def test_zero3_with_a_partitioned_reference_tracks_stage_0(bf16_live, tmp_path):
    uri, run_id = _run(tmp_path, "train.zero_stage=3")
    expected = _history(*bf16_live, metrics.LOSS)
    assert _history(uri, run_id, metrics.LOSS) == pytest.approx(expected, abs=2e-2)  # bf16


def test_precomputed_reference_on_gpus_tracks_the_live_one(bf16_live, tmp_path):
    uri, run_id = _run(tmp_path, "model.reference_logps=precomputed",
                       f"model.reference_cache_dir={tmp_path / 'cache'}")
    expected = _history(*bf16_live, metrics.LOSS)
    assert _history(uri, run_id, metrics.LOSS) == pytest.approx(expected, abs=2e-2)


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is None,
                    reason="flash-attn is not installed")
def test_flash_attention_is_picked_and_trains(tmp_path):
    from platform.models.loading import attention_implementation

    assert attention_implementation("auto", on_gpu=True, bf16=True) == "flash_attention_2"
    uri, run_id = _run(tmp_path, "model.attn_implementation=flash_attention_2")
    assert all(math.isfinite(v) for v in _history(uri, run_id, metrics.LOSS))
