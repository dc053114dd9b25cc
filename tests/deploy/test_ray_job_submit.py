"""The README's cluster path, word for word: ``ray start --head`` and ``ray job submit``.

A separate Ray cluster is started for this module (``ray start --head --block``) and torn
down by stopping that process, so the test session's own local cluster is left alone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # `python` is the venv's
    env["RAY_AUTH_MODE"] = "token"  # as the README says: Ray 2.60 clusters want a token
    return env


def _stop(processes: list[subprocess.Popen], temp_dir: Path) -> None:
    """Stop the nodes this module started, and nothing else on the machine."""
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)  # `ray start --block` cleans up on SIGINT
    for process in processes:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    for leftover in psutil.process_iter(["cmdline"]):
        if any(str(temp_dir) in part for part in leftover.info["cmdline"] or []):
            with contextlib.suppress(psutil.Error):
                leftover.kill()


@pytest.fixture(scope="module")
def job_cluster():
    """A head node plus one worker node on this machine; yields the dashboard address.

    The nodes keep their files in their own temp dir, so the address file they write does
    not make other Ray clients on the machine join them.
    """
    # Short: Ray's Unix socket paths under it must stay within the 107-byte limit.
    temp_dir = Path(tempfile.mkdtemp(prefix="rj-", dir="/tmp"))
    gcs_port, dashboard_port = _free_port(), _free_port()
    common = ["--block", "--disable-usage-stats", f"--temp-dir={temp_dir}"]
    nodes: list[subprocess.Popen] = []
    try:
        nodes.append(_start_node(["--head", f"--port={gcs_port}", "--num-cpus=2",
                                  f"--dashboard-port={dashboard_port}",
                                  "--include-dashboard=true", *common]))
        address = f"http://127.0.0.1:{dashboard_port}"
        _wait_for_jobs_api(address)
        nodes.append(_start_node([f"--address=127.0.0.1:{gcs_port}", "--num-cpus=1",
                                  *common]))
        yield address
    finally:
        _stop(nodes, temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _start_node(arguments: list[str]) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "ray"), "start", *arguments], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def _wait_for_jobs_api(address: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        probe = subprocess.run([str(BIN / "ray"), "job", "list", "--address", address],
                               env=_env(), capture_output=True, text=True)
        if probe.returncode == 0:
            return
        time.sleep(2)
    raise TimeoutError(f"the Ray jobs API at {address} did not come up in {timeout_s} s")


_AGENT_NOT_READY = "No available agent to submit job"


def _run_submission(command: list[str]) -> subprocess.CompletedProcess:
    """Run a ``ray job submit`` command; a head whose job agent is still starting refuses
    the submission before any job exists, so that refusal is retried."""
    for _ in range(30):
        done = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True,
                              timeout=900)
        if _AGENT_NOT_READY not in done.stdout + done.stderr:
            return done
        time.sleep(2)
    return done


def _submit(address: str, words: list[str]) -> subprocess.CompletedProcess:
    return _run_submission(
        [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", ".", "--",
         "python", "-m", "platform.run", *words]
    )


def readme_job_command() -> str:
    """The ``ray job submit`` line of the README's "On a Ray cluster" section."""
    text = (REPO / "README.md").read_text()
    section = text.split("### On a Ray cluster", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    (line,) = [line.strip() for line in block.splitlines()
               if line.strip().startswith("ray job submit")]
    return " ".join(line.split())


@pytest.mark.slow
def test_the_readme_job_command_runs_word_for_word(job_cluster, tmp_path):
    command = readme_job_command()
    assert command.startswith("ray job submit --address http://127.0.0.1:8265 --working-dir . "
                              "-- python -m platform.run objective=bco recipe=tiny")
    # Only the cluster's address and the tracking store's folder are the test's own.
    command = command.replace("http://127.0.0.1:8265", job_cluster)
    command = command.replace("$PWD", str(tmp_path))
    done = _run_submission(["bash", "-c", command])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "succeeded" in (done.stdout + done.stderr)
    assert "step 8/8" in done.stdout  # progress reaches the job's logs

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("bco-platform").experiment_id])
    assert run.info.status == "FINISHED"
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 8


@pytest.mark.slow
def test_a_failing_job_ends_failed_with_the_error_in_its_logs(job_cluster):
    done = _submit(job_cluster, ["objective=nope", "recipe=tiny"])
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "failed" in output.lower()
    assert "objective 'nope' is not registered" in output
