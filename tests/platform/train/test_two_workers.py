"""Cross-worker reductions under Ray Train: every worker ends with the same delta."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import cloudpickle
import pytest
import torch

# Ray workers import this module's functions by value: they cannot import test modules.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

# Rewards r = beta * (policy - reference) with beta = 1 and reference = 0 below.
WORKER_BATCHES = {
    0: ([0.5, 1.5, -1.0], [True, True, False]),  # two thumbs-up, one thumbs-down
    1: ([2.0], [True]),  # a batch of size 1, one class only
}


def _train_loop(config: dict) -> None:
    import ray.train

    from objectives.base import BinaryLogps
    from objectives.bco import BCOConfig, BCOObjective
    from platform.train.reduce import DistributedReducer

    rank = ray.train.get_context().get_world_rank()
    rewards, labels = WORKER_BATCHES[rank]
    objective = BCOObjective(BCOConfig(beta=1.0, delta_ema_decay=0.5))
    reducer = DistributedReducer()
    deltas = []
    for step in range(2):
        policy = torch.tensor(rewards, dtype=torch.float64) * (step + 1)
        batch = BinaryLogps(policy_logps=policy, reference_logps=torch.zeros_like(policy),
                            labels=torch.tensor(labels), completion_lengths=torch.ones(len(labels)))
        out = objective(batch, reducer)
        deltas.append(float(objective.delta))
        global_loss = float(reducer.sum(out.loss.detach()))
    # Each worker writes what it holds; Ray Train merges the workers' checkpoint folders.
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        record = {"deltas": deltas, "loss": global_loss}
        (Path(folder) / f"rank{rank}.json").write_text(json.dumps(record))
        ray.train.report({}, checkpoint=ray.train.Checkpoint.from_directory(folder))


def test_two_workers_hold_the_hand_computed_global_delta(ray_cluster, tmp_path):
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    # Global batch, step 1: up rewards {0.5, 1.5, 2.0} -> mean 4/3; down {-1.0} -> mean -1.
    # First observation seeds the averages: delta_0 = (4/3 - 1) / 2 = 1/6.
    # Step 2 doubles every reward: up mean 8/3, down mean -2; with decay 0.5:
    # up = 0.5 * 4/3 + 0.5 * 8/3 = 2, down = 0.5 * -1 + 0.5 * -2 = -1.5; delta_1 = 0.25.
    expected_deltas = (1 / 6, 0.25)
    # Global loss at step 2 (mean over the 4 rows of -log sigmoid(+-(r - 0.25))):
    shifted = [1.0 - 0.25, 3.0 - 0.25, 4.0 - 0.25]
    expected_loss = (sum(math.log1p(math.exp(-x)) for x in shifted)
                     + math.log1p(math.exp(-2.0 - 0.25))) / 4

    trainer = TorchTrainer(
        _train_loop,
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5}),
        torch_config=TorchConfig(backend="gloo"),
        run_config=RunConfig(name=f"delta-{tmp_path.name}", storage_path=str(tmp_path)),
    )
    with trainer.fit().checkpoint.as_directory() as folder:
        records = [json.loads((Path(folder) / f"rank{rank}.json").read_text())
                   for rank in (0, 1)]
    for record in records:  # identical on both workers, equal to the hand computation
        assert record["deltas"] == pytest.approx(expected_deltas, rel=1e-12)
        assert record["loss"] == pytest.approx(expected_loss, rel=1e-12)


# Mismatched-pair log-ratios per worker (reference 0, beta 1): z_ref's inputs.
KTO_MISMATCHED = {0: [0.2, 0.6, -0.2], 1: [1.0]}


def _kto_loop(config: dict) -> None:
    import json
    import tempfile

    import ray.train

    from objectives import metrics
    from objectives.base import BinaryLogps
    from objectives.kto import KTOConfig, KTOObjective
    from platform.train.reduce import DistributedReducer

    rank = ray.train.get_context().get_world_rank()
    rewards, labels = WORKER_BATCHES[rank]
    policy = torch.tensor(rewards, dtype=torch.float64)
    mismatched = torch.tensor(KTO_MISMATCHED[rank], dtype=torch.float64)
    batch = BinaryLogps(policy_logps=policy, reference_logps=torch.zeros_like(policy),
                        labels=torch.tensor(labels), completion_lengths=torch.ones(len(labels)),
                        policy_mismatched_logps=mismatched,
                        reference_mismatched_logps=torch.zeros_like(mismatched))
    out = KTOObjective(KTOConfig(beta=1.0))(batch, DistributedReducer())
    with tempfile.TemporaryDirectory() as folder:
        record = {"z_ref": float(out.metrics[metrics.Z_REF])}
        (Path(folder) / f"rank{rank}.json").write_text(json.dumps(record))
        ray.train.report({}, checkpoint=ray.train.Checkpoint.from_directory(folder))


def test_two_workers_hold_the_hand_computed_global_kto_reference_point(ray_cluster, tmp_path):
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    # z_ref = max(0, mean of the 4 mismatched log-ratios) = (0.2 + 0.6 - 0.2 + 1.0) / 4 = 0.4;
    # worker 1 alone would say 1.0 and worker 0 alone 0.2: only the all-reduce gives 0.4.
    trainer = TorchTrainer(
        _kto_loop,
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5}),
        torch_config=TorchConfig(backend="gloo"),
        run_config=RunConfig(name=f"kto-{tmp_path.name}", storage_path=str(tmp_path)),
    )
    with trainer.fit().checkpoint.as_directory() as folder:
        values = [json.loads((Path(folder) / f"rank{rank}.json").read_text())["z_ref"]
                  for rank in (0, 1)]
    assert values == pytest.approx([0.4, 0.4], rel=1e-12)
