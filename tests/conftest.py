"""Shared fixtures: one local Ray cluster per test session, and a private cache and
MLflow store per test so that tests never see each other's files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster with the repository as every worker's working_dir."""
    import ray

    from platform.train.launcher import connect

    connect(None)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_model_path() -> str:
    """The builtin tiny Llama (built once into the user cache, as a real run does)."""
    from platform.models.builtin import resolve_model

    return resolve_model("builtin:tiny-llama")


@pytest.fixture
def mlflow_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` run where CUDA is available and are skipped elsewhere."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (marked gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
