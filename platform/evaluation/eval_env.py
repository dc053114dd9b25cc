"""The evaluation environment ``.venv-eval``: where vLLM runs, apart from training.

vLLM pins its own torch and transformers and must never be imported by the training
environment, so it lives in a second virtual environment built by ``make setup-eval``
from ``requirements/eval.lock``. The evaluator's Ray actors start their worker processes
with that environment's interpreter (Ray's ``py_executable`` runtime-env field); the
repository still reaches them as the job's ``working_dir``, and both environments carry
the same Ray release, which Ray requires of every process in a cluster.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
EVAL_VENV = REPO_ROOT / ".venv-eval"
EVAL_PYTHON_ENV_VAR = "BCO_EVAL_PYTHON"
SETUP_COMMAND = "make setup-eval"
# Environment variables the vLLM workers need from the driver: offline hub, caches, and
# vLLM's own switch for a context longer than the model was trained for.
_FORWARDED = ("BCO_PLATFORM_CACHE", "HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
              "TOKENIZERS_PARALLELISM", "VLLM_ALLOW_LONG_MAX_MODEL_LEN")


class EvalEnvironmentError(RuntimeError):
    """``.venv-eval`` is missing or unusable."""


def eval_python(configured: str | None = None) -> Path:
    """The interpreter of the evaluation environment.

    Order: the configured path, else ``$BCO_EVAL_PYTHON``, else ``<repo>/.venv-eval``.
    """
    raw = configured or os.environ.get(EVAL_PYTHON_ENV_VAR)
    return Path(raw).expanduser() if raw else EVAL_VENV / "bin" / "python"


def check_eval_python(python: Path) -> Path:
    """The interpreter if it exists and vLLM was installed beside it; else a clear error."""
    if not python.is_file() or not os.access(python, os.X_OK):
        raise EvalEnvironmentError(
            f"the evaluation environment's interpreter {python} does not exist. vLLM runs "
            f"in its own environment: run `{SETUP_COMMAND}` in {REPO_ROOT} to build "
            f".venv-eval (or set {EVAL_PYTHON_ENV_VAR} to another one's python).")
    site_packages = list(python.parent.parent.glob("lib/python3*/site-packages/vllm"))
    if not site_packages:
        raise EvalEnvironmentError(
            f"{python} has no vllm package next to it; the evaluation environment is "
            f"incomplete. Run `{SETUP_COMMAND}` (it installs requirements/eval.lock).")
    return python


def actor_runtime_env(python: Path, extra_env: dict[str, str] | None = None
                      ) -> dict[str, Any]:
    """Runtime env of an evaluator actor: the job's working_dir, eval interpreter.

    Ray merges this with the job's runtime env field by field, so the working_dir that
    ``launcher.connect`` set (the repository) still applies; env_vars are merged too.
    """
    env_vars = {name: os.environ[name] for name in _FORWARDED if name in os.environ}
    env_vars.update(extra_env or {})
    return {"py_executable": str(python), "env_vars": env_vars}
