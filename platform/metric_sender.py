"""Step metrics that survive a tracking server going away mid-run.

Training never waits for MLflow: :class:`MetricSender` queues each step's metrics and a
background thread sends them in order. When a send fails (server down, network cut) the
batch stays at the head of the queue and is retried with capped exponential backoff, so
no step is lost or reordered; training goes on meanwhile. At the end, :meth:`close` waits
up to ``drain_timeout_s`` for the queue to empty. Whatever is still unsent then is written
to a JSON Lines file beside the run's outputs, and the error says how to send it later
(``python -m platform.tracking_sync <file>``).

Sends are at least ``min_interval_s`` apart, and each takes everything queued meanwhile
(up to MLflow's batch limit), so a fast run makes one call a second rather than one a step:
a call costs the training process tens of milliseconds of CPU.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from pathlib import Path

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

logger = logging.getLogger(__name__)

_BATCH = 1000  # MLflow's limit of metrics per log_batch call


class MetricSender:
    """Ordered, retrying, non-blocking delivery of metrics to one MLflow run."""

    def __init__(self, client: MlflowClient, run_id: str, spill_path: Path,
                 max_backoff_s: float = 30.0, drain_timeout_s: float = 300.0,
                 min_interval_s: float = 1.0) -> None:
        self._client, self._run_id = client, run_id
        self._min_interval_s = min_interval_s
        self._spill_path = spill_path
        self._max_backoff_s, self._drain_timeout_s = max_backoff_s, drain_timeout_s
        self._queue: collections.deque[list[Metric]] = collections.deque()
        self._wake = threading.Condition()
        self._closing = False
        self._failures = 0
        self._thread = threading.Thread(target=self._run, name="metric-sender", daemon=True)
        self._thread.start()

    def send(self, metrics: list[Metric]) -> None:
        with self._wake:
            for start in range(0, len(metrics), _BATCH):
                self._queue.append(metrics[start:start + _BATCH])
            self._wake.notify()

    def close(self) -> None:
        """Wait for the queue to drain; spill what could not be sent."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout=self._drain_timeout_s)
        with self._wake:
            pending = list(self._queue)
            self._queue.clear()
        if pending:
            self._spill(pending)

    @property
    def pending(self) -> int:
        with self._wake:
            return len(self._queue)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closing:
                    self._wake.wait()
                if not self._queue:
                    return
                parts = self._head()
            if self._deliver([metric for part in parts for metric in part]):
                with self._wake:
                    for _ in parts:
                        self._queue.popleft()
                    # Let steps gather before the next call (close() cuts the wait short).
                    self._wake.wait_for(lambda: self._closing, timeout=self._min_interval_s)

    def _head(self) -> list[list[Metric]]:
        """The leading queued batches that fit one call together (at least one)."""
        parts, size = [], 0
        for part in self._queue:
            if parts and size + len(part) > _BATCH:
                break
            parts.append(part)
            size += len(part)
        return parts

    def _deliver(self, batch: list[Metric]) -> bool:
        try:
            self._client.log_batch(self._run_id, metrics=batch)
        except Exception as exc:  # any transport or server error: keep the batch, retry
            self._failures += 1
            delay = min(self._max_backoff_s, 0.5 * 2 ** min(self._failures, 10))
            logger.warning("MLflow unreachable (%s: %s); %d batch(es) queued, retrying in "
                           "%.1f s; training continues", type(exc).__name__, exc,
                           len(self._queue), delay)
            time.sleep(delay)
            return False
        if self._failures:
            logger.info("MLflow reachable again; sending the queued metrics")
        self._failures = 0
        return True

    def _spill(self, pending: list[list[Metric]]) -> None:
        self._spill_path.parent.mkdir(parents=True, exist_ok=True)
        with self._spill_path.open("a") as handle:
            for batch in pending:
                for metric in batch:
                    handle.write(json.dumps({"run_id": self._run_id, "key": metric.key,
                                             "value": metric.value, "step": metric.step,
                                             "timestamp": metric.timestamp}) + "\n")
        logger.error(
            "%d metric batch(es) could not reach MLflow before the run ended; they are in "
            "%s. Send them when the server is back: python -m platform.tracking_sync %s",
            len(pending), self._spill_path, self._spill_path,
        )


def resend(path: Path, client: MlflowClient) -> int:
    """Send a spill file's metrics; returns how many were sent."""
    by_run: dict[str, list[Metric]] = collections.defaultdict(list)
    for line in path.read_text().splitlines():
        row = json.loads(line)
        by_run[row["run_id"]].append(Metric(row["key"], row["value"], row["timestamp"],
                                            row["step"]))
    for run_id, metrics in by_run.items():
        for start in range(0, len(metrics), _BATCH):
            client.log_batch(run_id, metrics=metrics[start:start + _BATCH])
    return sum(len(metrics) for metrics in by_run.values())
