"""Training that survives: checkpoints, a killed worker, a killed driver, ZeRO stages.

One uninterrupted run is the reference trajectory; every other run uses the same seed and
must reproduce its losses and BCO deltas (tolerance 1e-5 on CPU).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient

from objectives import metrics
from platform.config_loading import load_config
from platform.train.launcher import launch

REPO = Path(__file__).resolve().parents[3]
STEPS = 6
COMMON = ["objective=bco", "recipe=tiny", f"train.max_steps={STEPS}",
          "train.micro_batch_size=4", "checkpoint.every_steps=2", "resources.num_workers=2"]

pytestmark = pytest.mark.slow


def _history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    client = MlflowClient(uri)
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def _assert_same_trajectory(uri: str, run_id: str, reference: dict, steps: int = STEPS):
    for key in (metrics.LOSS, metrics.DELTA, metrics.REWARDS_UP):
        history = _history(uri, run_id, key)
        assert [step for step, _ in history] == list(range(1, steps + 1)), key  # once each
        for (step, value), (_, expected) in zip(history, reference[key], strict=False):
            assert value == pytest.approx(expected, abs=1e-5), (key, step)


@pytest.fixture(scope="module")
def reference_run(ray_cluster, tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    result = launch(load_config([*COMMON, f"tracking.uri={uri}",
                                 f"train.output_dir={folder}/out"]))
    trajectory = {key: _history(uri, result.run_id, key)
                  for key in (metrics.LOSS, metrics.DELTA, metrics.REWARDS_UP)}
    return result, trajectory


def test_checkpoints_are_written_every_n_steps_and_at_the_end(reference_run):
    result, trajectory = reference_run
    run_dir = Path(result.model_dir).parent
    checkpoints = sorted(p for p in (run_dir / "ray" / "attempt-1").glob("checkpoint_*")
                         if p.is_dir())
    assert len(checkpoints) == 2  # steps 2, 4 and 6 were written; checkpoint.keep = 2
    newest = checkpoints[-1]
    assert {"trainer_state_rank0.pt", "trainer_state_rank1.pt", "engine"} <= {
        p.name for p in newest.iterdir()}
    assert [step for step, _ in trajectory[metrics.LOSS]] == list(range(1, STEPS + 1))


def _worker_pids() -> list[int]:
    return [p.pid for p in psutil.process_iter(["cmdline"])
            if any("RayTrainWorker" in part for part in p.info["cmdline"] or [])]


def _wait_for_step(uri: str, experiment: str, step: int, timeout_s: float = 600) -> str:
    """The id of the experiment's run once it has logged ``step``."""
    client = MlflowClient(uri)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = client.get_experiment_by_name(experiment)
        for run in client.search_runs([found.experiment_id]) if found else []:
            if any(m.step >= step for m in client.get_metric_history(run.info.run_id,
                                                                      metrics.LOSS)):
                return run.info.run_id
        time.sleep(0.5)
    raise TimeoutError(f"no run logged step {step} within {timeout_s} s")


def _wait_for_registered_checkpoint(out: Path, name: str, timeout_s: float = 300) -> None:
    """Ray Train registers a reported checkpoint once its controller has collected every
    worker's report; a failure before that restarts from the previous checkpoint."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        snapshots = out.glob("*/ray/attempt-1/checkpoint_manager_snapshot.json")
        if any(name in snapshot.read_text() for snapshot in snapshots):
            return
        time.sleep(0.5)
    raise TimeoutError(f"checkpoint {name} was not registered within {timeout_s} s")


def test_a_killed_worker_resumes_from_the_last_checkpoint(reference_run, tmp_path):
    _, trajectory = reference_run
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = load_config([*COMMON, f"tracking.uri={uri}", f"train.output_dir={tmp_path}/out",
                          "train.max_failures=1"])
    outcome: dict = {}
    runner = threading.Thread(target=lambda: outcome.update(result=launch(config)))
    runner.start()

    run_id = _wait_for_step(uri, "bco-platform", 3)
    _wait_for_registered_checkpoint(tmp_path / "out", "checkpoint_step00000002")
    victims = _worker_pids()
    assert len(victims) == 2
    os.kill(victims[1], signal.SIGKILL)
    runner.join(timeout=900)

    assert outcome["result"].run_id == run_id
    assert MlflowClient(uri).get_run(run_id).info.status == "FINISHED"
    _assert_same_trajectory(uri, run_id, trajectory)


def test_a_killed_driver_resumes_its_mlflow_run(reference_run, ray_cluster, tmp_path):
    _, trajectory = reference_run
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    words = [*COMMON, f"tracking.uri={uri}", f"train.output_dir={tmp_path}/out"]
    before = {p.pid for p in psutil.process_iter()}
    driver = subprocess.Popen([sys.executable, "-m", "platform.run", *words], cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        run_id = _wait_for_step(uri, "bco-platform", 5)
        _wait_for_registered_checkpoint(tmp_path / "out", "checkpoint_step00000004")
    finally:
        _interrupt(driver, before)

    result = launch(load_config([*words, f"resume_from={run_id}"]))

    assert result.run_id == run_id
    assert MlflowClient(uri).get_run(run_id).info.status == "FINISHED"
    _assert_same_trajectory(uri, run_id, trajectory)


def _interrupt(driver: subprocess.Popen, before: set[int]) -> None:
    """Ctrl-C the driver; if it lingers, kill it and the local cluster it started."""
    driver.send_signal(signal.SIGINT)
    try:
        driver.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=60)
    for process in psutil.process_iter(["name", "cmdline"]):
        started_here = process.pid not in before
        ray_daemon = any(word in " ".join(process.info["cmdline"] or [])
                         for word in ("gcs_server", "raylet", "ray::", "dashboard"))
        if started_here and ray_daemon:
            process.kill()


def test_zero_stage_3_gives_the_losses_of_stage_0(reference_run, tmp_path):
    _, trajectory = reference_run
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    steps = 3
    words = [w for w in COMMON if not w.startswith(("train.max_steps", "checkpoint."))]
    result = launch(load_config([*words, f"train.max_steps={STEPS}", "train.zero_stage=3",
                                 f"tracking.uri={uri}", f"train.output_dir={tmp_path}/out"]))
    losses = _history(uri, result.run_id, metrics.LOSS)[:steps]
    for (step, value), (_, expected) in zip(losses, trajectory[metrics.LOSS], strict=False):
        assert value == pytest.approx(expected, abs=1e-4), step


def test_optimizer_offload_under_zero_2_gives_the_losses_of_stage_0(reference_run, tmp_path):
    _, trajectory = reference_run
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    steps = 3
    words = [w for w in COMMON if not w.startswith(("train.max_steps", "checkpoint."))]
    # The same max_steps as the reference run: the learning-rate schedule depends on it.
    result = launch(load_config([*words, f"train.max_steps={STEPS}", "train.zero_stage=2",
                                 "train.offload_optimizer=true", f"tracking.uri={uri}",
                                 f"train.output_dir={tmp_path}/out"]))
    losses = _history(uri, result.run_id, metrics.LOSS)
    assert len(losses) == STEPS
    losses = losses[:steps]
    for (step, value), (_, expected) in zip(losses, trajectory[metrics.LOSS], strict=False):
        assert value == pytest.approx(expected, abs=1e-4), step
