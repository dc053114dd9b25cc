"""One evaluation end to end: questions, answers, judgments, scores, MLflow.

Order of work: read every benchmark's questions; start the hosted judge (if any) so it
loads while the model answers; generate every benchmark's answers in one batch per turn;
judge and score each benchmark; stop the judge; log everything to the run. Nothing is
logged when a step before the scores fails, so a run never holds half an evaluation.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from platform import tracking
from platform.evaluation import eval_env, eval_tracking
from platform.evaluation.benchmarks import BENCHMARK_CLASSES, Benchmark
from platform.evaluation.generation import Generation, Generator, answer_conversations
from platform.evaluation.judge_client import JudgeClient, JudgeClientConfig
from platform.evaluation.judging import BenchmarkResult, Judge
from platform.evaluation.settings import EvalConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalOutcome:
    run_id: str
    tracking_uri: str
    new_run: bool
    model_path: str
    results: list[BenchmarkResult]


def evaluate(config: EvalConfig) -> EvalOutcome:
    """Run the configured benchmarks on the model and log the results to its run."""
    from platform.train.launcher import connect

    started = time.monotonic()
    uri = tracking.resolve_tracking_uri(config.tracking.uri)
    model = eval_tracking.resolve_model_ref(config.model, uri)
    judge_path = (eval_tracking.resolve_model_ref(config.judge.model_path, uri).path
                  if config.judge.kind == "hosted" else None)
    params = eval_tracking.judge_identity(config.judge, judge_path)
    tags = {"eval.benchmarks": ",".join(config.benchmarks), "eval.limit": str(config.limit),
            "eval.data_dir": str(config.data_dir),
            "eval.generation.backend": config.generation.backend}
    if config.generation.backend == "vllm" or config.judge.kind == "hosted":
        eval_env.check_eval_python(eval_env.eval_python(config.eval_python))  # fail early
    # An endpoint's client is built first: a missing API key stops the run before any work.
    external = (make_judge(config, config.judge.base_url, config.judge.model, None, params)
                if config.judge.kind == "external" else None)
    run_id, new_run = eval_tracking.open_eval_run(model, config.tracking, uri, params, tags)
    try:
        # Ray first: the pairwise test split is read through Ray Data, and a Ray started
        # implicitly there would lack the repository as the actors' working_dir.
        connect(config.ray_address)
        benchmarks = [BENCHMARK_CLASSES[name](config) for name in config.benchmarks]
        for benchmark in benchmarks:
            logger.info("%s: %d question(s)", benchmark.name, benchmark.load())
        results = _answer_and_judge(config, model.path, judge_path, params, benchmarks,
                                    external)
        summary = _summary(config, model, params, results, time.monotonic() - started)
        eval_tracking.log_results(uri, run_id, params, tags, results, summary)
    except BaseException:
        if new_run:
            tracking.finish_run(uri, run_id, succeeded=False)
        raise
    if new_run:
        tracking.finish_run(uri, run_id, succeeded=True)
    return EvalOutcome(run_id, uri, new_run, model.path, results)


def _answer_and_judge(config: EvalConfig, model_path: str, judge_path: str | None,
                      identity: dict[str, str], benchmarks: list[Benchmark],
                      external: Judge | None) -> list[BenchmarkResult]:
    with _judge_when_ready(config, judge_path, identity, external) as start_judge:
        answers = generate_answers(config, model_path, benchmarks)
        judge = start_judge()
        results = []
        for benchmark in benchmarks:
            result = benchmark.score(answers[benchmark.name], judge)
            result.log_summary()
            results.append(result)
    return results


def generate_answers(config: EvalConfig, model_path: str, benchmarks: list[Benchmark]
                     ) -> dict[str, list[list[Generation]]]:
    """Every benchmark's answers, generated together (one batch per turn)."""
    conversations = {b.name: b.conversations() for b in benchmarks}
    flat = [c for name in conversations for c in conversations[name]]
    generator = make_generator(config, model_path)
    try:
        answered = answer_conversations(generator, flat, seed=config.generation.seed)
    finally:
        generator.close()
    answers, start = {}, 0
    for name, items in conversations.items():
        answers[name] = answered[start:start + len(items)]
        start += len(items)
    return answers


def make_generator(config: EvalConfig, model_path: str) -> Generator:
    from platform.evaluation.backends import (
        TransformersGenerator,
        VllmGenerator,
        vllm_env_vars,
    )

    settings = config.generation
    if settings.backend == "transformers":
        return TransformersGenerator(model_path,
                                     trust_remote_code=settings.trust_remote_code,
                                     max_model_len=settings.max_model_len)
    return VllmGenerator(
        model_path, python=eval_env.eval_python(config.eval_python),
        num_cpus=settings.num_cpus, max_model_len=settings.max_model_len,
        dtype=settings.dtype, seed=settings.seed,
        trust_remote_code=settings.trust_remote_code,
        env_vars=vllm_env_vars(settings.kv_cache_gib, settings.threads),
        load_timeout_s=settings.load_timeout_s)


@contextlib.contextmanager
def _judge_when_ready(config: EvalConfig, judge_path: str | None, identity: dict[str, str],
                      external: Judge | None) -> Iterator:
    """Yields a function that returns the ready :class:`Judge`; stops a hosted server."""
    if external is not None:
        yield lambda: external
        return
    settings = config.judge
    from platform.evaluation.hosted_judge import HostedJudge

    hosted = HostedJudge(str(judge_path), identity["eval.judge.model"],
                         python=eval_env.eval_python(config.eval_python),
                         num_cpus=settings.num_cpus, max_model_len=settings.max_model_len,
                         dtype=settings.dtype, kv_cache_gib=settings.kv_cache_gib)
    try:
        def ready() -> Judge:
            endpoint = hosted.wait_ready(settings.startup_timeout_s)
            return make_judge(config, endpoint.base_url, endpoint.model,
                              endpoint.max_model_len, identity)

        yield ready
    finally:
        hosted.stop()


def make_judge(config: EvalConfig, base_url: str, model: str, max_model_len: int | None,
               identity: dict[str, str]) -> Judge:
    settings = config.judge
    cap = settings.max_tokens
    if max_model_len is not None:
        # vLLM refuses max_tokens above the context length; the prompt's share is clamped.
        cap = min(cap or max_model_len, max_model_len - 1)
    client = JudgeClient(JudgeClientConfig(
        base_url=base_url, model=model, api_key_env=settings.api_key_env,
        api_key_file=settings.api_key_file, max_concurrency=settings.max_concurrency,
        max_retries=settings.max_retries, timeout_s=settings.timeout_s,
        cache_path=settings.cache_path or default_cache_path(identity)))
    return Judge(client, cap, identity)


def default_cache_path(identity: dict[str, str]) -> Path:
    """One judgment cache per judge; a hosted judge's also changes with its weights."""
    from platform.models.builtin import cache_root

    key = dict(identity)
    path = identity.get("eval.judge.model_path")
    if path:
        key["weights_mtime"] = str(max((f.stat().st_mtime for f in Path(path).iterdir()),
                                       default=0.0))
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_root() / "eval" / "judgments" / f"{digest}.jsonl"


def _summary(config: EvalConfig, model: eval_tracking.ModelRef, params: dict[str, str],
             results: list[BenchmarkResult], seconds: float) -> dict:
    return {"model": model.path, "model_run_id": model.run_id, "judge": params,
            "benchmarks": {r.name: {"metrics": r.metrics, "counts": r.counts(),
                                    "notes": r.notes, "unjudged": r.unjudged()}
                           for r in results},
            "config": config.model_dump(mode="json"),
            "seconds": round(seconds, 1)}
