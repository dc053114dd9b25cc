"""A judge model served by the platform: vLLM's OpenAI-compatible server in a Ray actor.

The server runs in the evaluation environment (``.venv-eval``) on 127.0.0.1, so the
actor is pinned to the driver's node: the :class:`JudgeClient` of the driver talks to it
like to any other endpoint. Starting it returns at once; :meth:`HostedJudge.wait_ready`
blocks until ``/v1/models`` answers, so the server can load while answers are generated.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from platform.evaluation import eval_env
from platform.evaluation.backends import vllm_env_vars

logger = logging.getLogger(__name__)

_STOP_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class HostedEndpoint:
    base_url: str
    model: str  # the served name, as requests must name it
    max_model_len: int | None


class HostedJudge:
    """Starts the server actor; ``wait_ready`` then ``stop`` (or use it as a context)."""

    def __init__(self, model_path: str, served_name: str, *, python: Path, num_cpus: float,
                 max_model_len: int | None, dtype: str, kv_cache_gib: int) -> None:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from platform.evaluation.vllm_actors import VllmServerWorker

        eval_env.check_eval_python(python)
        here = ray.get_runtime_context().get_node_id()
        runtime_env = eval_env.actor_runtime_env(python, vllm_env_vars(kv_cache_gib, None))
        self._actor = ray.remote(VllmServerWorker).options(
            num_cpus=num_cpus, runtime_env=runtime_env, max_restarts=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False),
        ).remote(model_path, served_name, max_model_len, dtype, 0, [])
        self.served_name = served_name
        self._started = time.monotonic()
        logger.info("starting the hosted judge %s (%s)", served_name, model_path)

    def wait_ready(self, timeout_s: float) -> HostedEndpoint:
        import ray

        status = ray.get(self._actor.wait_ready.remote(timeout_s))
        logger.info("hosted judge ready at %s after %.0f s", status["base_url"],
                    time.monotonic() - self._started)
        return HostedEndpoint(status["base_url"], self.served_name, status["max_model_len"])

    def stop(self) -> None:
        """Stop the server process, then the actor; never raises (it runs on cleanup)."""
        import ray
        from ray.exceptions import GetTimeoutError, RayError

        try:
            ray.get(self._actor.stop.remote(), timeout=_STOP_TIMEOUT_S)
        except (GetTimeoutError, RayError) as error:
            logger.warning("the hosted judge did not stop cleanly (%s); killing its actor",
                           error)
        ray.kill(self._actor)

    def __enter__(self) -> HostedJudge:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
