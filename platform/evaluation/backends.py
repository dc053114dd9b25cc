"""The two generation backends behind :class:`generation.Generator`.

``VllmGenerator`` drives a ``VllmEngineWorker`` actor in ``.venv-eval``;
``TransformersGenerator`` runs Hugging Face ``generate`` in this process. They render the
chat, fit the prompt and sample the same way, so a benchmark cannot tell them apart
(apart from the random streams, which differ between libraries).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from platform.evaluation import eval_env
from platform.evaluation.generation import (
    Generation,
    GenerationRequest,
    fit_prompt,
    hf_generate_kwargs,
    render_chat,
)

logger = logging.getLogger(__name__)

# GiB that vLLM's CPU backend gives its KV cache. Unset, it takes a share of the node's
# memory (gpu_memory_utilization of it), far more than small evaluation models need, and
# two engines (answers and judge) run at once.
KV_CACHE_ENV_VAR = "VLLM_CPU_KVCACHE_SPACE"


def vllm_env_vars(kv_cache_gib: int, threads: int | None) -> dict[str, str]:
    """Environment of a vLLM actor on a CPU node."""
    env = {KV_CACHE_ENV_VAR: str(kv_cache_gib)}
    if threads is not None:
        # Thread binding to fixed cores fights other processes on a shared machine.
        env.update({"VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": str(threads)})
    return env


class VllmGenerator:
    """A ``vllm.LLM`` in a Ray actor that runs on the evaluation environment's Python."""

    def __init__(self, model_path: str, *, python: Path, num_cpus: float,
                 max_model_len: int | None, dtype: str, seed: int,
                 trust_remote_code: bool, env_vars: dict[str, str],
                 load_timeout_s: float) -> None:
        import ray

        from platform.evaluation.vllm_actors import VllmEngineWorker

        eval_env.check_eval_python(python)
        started = time.monotonic()
        worker = ray.remote(VllmEngineWorker).options(
            num_cpus=num_cpus, runtime_env=eval_env.actor_runtime_env(python, env_vars),
            max_restarts=0)
        self._actor = worker.remote(model_path, max_model_len, dtype, seed,
                                    trust_remote_code)
        try:
            self.info: dict[str, Any] = ray.get(self._actor.info.remote(),
                                                timeout=load_timeout_s)
        except BaseException:
            ray.kill(self._actor)
            raise
        logger.info("vLLM %s loaded %s in %.0f s (context %d tokens, %s)",
                    self.info["vllm_version"], model_path, time.monotonic() - started,
                    self.info["max_model_len"], self.info["python"])

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        import ray

        if not requests:
            return []
        wire = [request.to_wire() for request in requests]
        return [Generation(**result)
                for result in ray.get(self._actor.generate.remote(wire))]

    def close(self) -> None:
        import ray

        ray.kill(self._actor)


class TransformersGenerator:
    """Hugging Face ``generate``, one request at a time, in this process."""

    def __init__(self, model_path: str, *, trust_remote_code: bool,
                 max_model_len: int | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self._torch = torch
        self._tokenizer = AutoTokenizer.from_pretrained(model_path,
                                                        trust_remote_code=trust_remote_code)
        self._model = AutoModelForCausalLM.from_pretrained(
            model_path, trust_remote_code=trust_remote_code).eval()
        self._max_model_len = max_model_len or int(
            getattr(self._model.config, "max_position_embeddings", 2048))
        self.info = {"max_model_len": self._max_model_len, "backend": "transformers"}

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        return [self._generate_one(request) for request in requests]

    def _generate_one(self, request: GenerationRequest) -> Generation:
        text = render_chat(self._tokenizer, request.messages)
        ids = self._tokenizer(text, add_special_tokens=False)["input_ids"]
        ids, max_tokens, truncated = fit_prompt(ids, self._max_model_len, request.max_tokens)
        kwargs = hf_generate_kwargs(request) | {"max_new_tokens": max_tokens}
        self._torch.manual_seed(request.seed)  # per request, as vLLM seeds each one
        eos = self._stop_token_ids()
        pad = self._tokenizer.pad_token_id
        with self._torch.no_grad():
            output = self._model.generate(
                self._torch.tensor([ids]), attention_mask=self._torch.ones(1, len(ids),
                                                                           dtype=int),
                eos_token_id=eos, pad_token_id=eos[0] if pad is None else pad, **kwargs)
        new = output[0, len(ids):].tolist()
        stopped = bool(new) and new[-1] in eos
        answer = self._tokenizer.decode(new, skip_special_tokens=True)
        return Generation(text=answer, n_tokens=len(new),
                          finish_reason="stop" if stopped else "length",
                          prompt_tokens=len(ids), prompt_truncated=truncated)

    def _stop_token_ids(self) -> list[int]:
        """EOS of the model plus the chat template's end-of-turn token, as vLLM stops."""
        ids = {self._tokenizer.eos_token_id}
        end_of_turn = self._tokenizer.convert_tokens_to_ids("<|im_end|>")
        if isinstance(end_of_turn, int) and end_of_turn != self._tokenizer.unk_token_id:
            ids.add(end_of_turn)
        return sorted(i for i in ids if i is not None)

    def close(self) -> None:
        del self._model
