"""Classes that run as Ray actors inside the evaluation environment (``.venv-eval``).

* :class:`VllmEngineWorker` holds a ``vllm.LLM`` and answers batches of chat requests.
* :class:`VllmServerWorker` runs vLLM's OpenAI-compatible server as a child process on
  127.0.0.1, the platform-hosted judge.

vLLM is imported inside the methods only: the training environment imports this module
to name the actor classes and must not import vLLM (it pins another torch and
transformers).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from platform.evaluation.generation import fit_prompt, render_chat

logger = logging.getLogger(__name__)

_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
_LOG_TAIL_CHARS = 3000
# Runs before the server (then execs it): on Linux the kernel sends SIGTERM to the server
# when this actor dies, even by SIGKILL (ray.kill), so no server outlives its actor.
_DIE_WITH_PARENT = ("import ctypes, os, sys; ctypes.CDLL(None).prctl(1, 15); "
                    "os.execv(sys.argv[1], sys.argv[1:])")


def _engine_kwargs(max_model_len: int | None, dtype: str, seed: int,
                   trust_remote_code: bool) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"dtype": dtype, "seed": seed,
                              "trust_remote_code": trust_remote_code,
                              # Graph capture costs minutes on a CPU and saves little on
                              # short evaluation batches.
                              "enforce_eager": True,
                              # The engine in this process (with multiprocessing off, see
                              # VllmEngineWorker): one vLLM import fewer to wait for.
                              "distributed_executor_backend": "uni"}
    if max_model_len is not None:
        kwargs["max_model_len"] = max_model_len
    return kwargs


class VllmEngineWorker:
    """A loaded ``vllm.LLM``; requests and results are plain dicts (see ``to_wire``)."""

    def __init__(self, model_path: str, max_model_len: int | None = None,
                 dtype: str = "auto", seed: int = 0, trust_remote_code: bool = False) -> None:
        started = time.monotonic()
        # Before vLLM reads its settings: on CPU it accepts the in-process executor only
        # with the engine in this process too.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM

        self._llm = LLM(model=model_path, **_engine_kwargs(max_model_len, dtype, seed,
                                                          trust_remote_code))
        self._tokenizer = self._llm.get_tokenizer()
        self._max_model_len = int(self._llm.llm_engine.model_config.max_model_len)
        self._load_s = time.monotonic() - started

    def info(self) -> dict[str, Any]:
        import vllm

        return {"vllm_version": vllm.__version__, "max_model_len": self._max_model_len,
                "load_s": round(self._load_s, 1), "python": sys.executable}

    def generate(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One batch: every request rendered with the chat template, fitted, sampled."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        prompts, params, flags = [], [], []
        for request in requests:
            text = render_chat(self._tokenizer, request["messages"])
            ids = self._tokenizer(text, add_special_tokens=False)["input_ids"]
            ids, max_tokens, truncated = fit_prompt(ids, self._max_model_len,
                                                   request["max_tokens"])
            prompts.append(TokensPrompt(prompt_token_ids=ids))
            params.append(SamplingParams(
                temperature=request["temperature"], top_p=request["top_p"],
                max_tokens=max_tokens, seed=request["seed"]))
            flags.append((len(ids), truncated))
        outputs = self._llm.generate(prompts, params, use_tqdm=False)
        return [{"text": output.outputs[0].text,
                 "n_tokens": len(output.outputs[0].token_ids),
                 "finish_reason": str(output.outputs[0].finish_reason),
                 "prompt_tokens": prompt_tokens, "prompt_truncated": truncated}
                for output, (prompt_tokens, truncated) in zip(outputs, flags, strict=True)]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_command(python: str, model_path: str, served_name: str, port: int,
                   max_model_len: int | None, dtype: str, seed: int,
                   extra_args: list[str]) -> list[str]:
    """The command line of vLLM's OpenAI-compatible server on 127.0.0.1."""
    guard = [python, "-c", _DIE_WITH_PARENT] if sys.platform == "linux" else []
    command = [*guard, python, "-m", _SERVER_MODULE, "--model", model_path,
               "--served-model-name", served_name, "--host", "127.0.0.1",
               "--port", str(port), "--dtype", dtype, "--seed", str(seed),
               "--enforce-eager", "--disable-uvicorn-access-log"]
    if max_model_len is not None:
        command += ["--max-model-len", str(max_model_len)]
    return command + list(extra_args)


class VllmServerWorker:
    """vLLM's OpenAI-compatible server as this actor's child process."""

    def __init__(self, model_path: str, served_name: str, max_model_len: int | None = None,
                 dtype: str = "auto", seed: int = 0,
                 extra_args: list[str] | None = None) -> None:
        self._port = free_port()
        # Outside the repository: there the package `platform` would shadow the stdlib
        # for the server process (harmless, but nothing of the repository is needed).
        self._workdir = Path(tempfile.mkdtemp(prefix="vllm-judge-"))
        self._log_path = self._workdir / "server.log"
        command = server_command(sys.executable, model_path, served_name, self._port,
                                 max_model_len, dtype, seed, extra_args or [])
        with open(self._log_path, "wb") as log:
            self._process = subprocess.Popen(command, cwd=self._workdir, stdout=log,
                                             stderr=subprocess.STDOUT,
                                             start_new_session=True)
        self._started = time.monotonic()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/v1"

    def wait_ready(self, timeout_s: float) -> dict[str, Any]:
        """Poll ``/v1/models`` until it lists a model; raise with the log tail if not."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"the vLLM judge server exited with code {self._process.returncode} "
                    f"before answering; its log ends with:\n{self.log_tail()}")
            models = self._models()
            if models:
                return {"base_url": self.base_url, "models": [m["id"] for m in models],
                        "max_model_len": models[0].get("max_model_len"),
                        "ready_s": round(time.monotonic() - self._started, 1)}
            time.sleep(1.0)
        raise TimeoutError(
            f"the vLLM judge server did not answer {self.base_url}/models within "
            f"{timeout_s:.0f} s; raise judge.startup_timeout_s or look at its log:\n"
            f"{self.log_tail()}")

    def _models(self) -> list[dict[str, Any]]:
        try:
            with urllib.request.urlopen(self.base_url + "/models", timeout=5) as response:
                return list(json.loads(response.read())["data"])
        except (OSError, ValueError, KeyError):
            return []  # not listening yet, or still starting up

    def log_tail(self) -> str:
        try:
            return self._log_path.read_text(errors="replace")[-_LOG_TAIL_CHARS:]
        except OSError as error:
            return f"(no log: {error})"

    def stop(self, grace_s: float = 20.0) -> int | None:
        """Stop the server's process group: SIGTERM, then SIGKILL after ``grace_s``."""
        if self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
        return self._process.returncode
