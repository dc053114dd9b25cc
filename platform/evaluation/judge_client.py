"""Client for an OpenAI-compatible ``/v1/chat/completions`` judge endpoint (SPEC §5).

Standard library only. Requests run on a bounded thread pool; each is retried with
exponential backoff and jitter on 429, 5xx, connection errors and timeouts, honouring
``Retry-After``. Successful judgments are appended to a JSONL cache keyed by a hash of
(model, messages, sampling parameters), so a re-run sends nothing it has already sent.
Every request gets a result: one that still fails after its retries is returned with
``ok=False`` and the reason, never dropped.

The API key is read from an environment variable or a file named in the config. It goes
into the ``Authorization`` header and nowhere else: not into logs, reprs or errors.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

logger = logging.getLogger(__name__)

Message = dict[str, str]
_RETRYABLE_STATUS = frozenset({429})  # plus every 5xx
_REDACTED = "***"


class SamplingParams(BaseModel):
    """Judge sampling parameters; part of the cache key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(0.0, ge=0.0, le=2.0, description="Sampling temperature.")
    max_tokens: int = Field(2048, ge=1, description="Most tokens the judge may generate.")
    top_p: float | None = Field(None, gt=0.0, le=1.0,
                                description="Nucleus sampling mass; None leaves it unset.")
    logprobs: bool = Field(False, description="Ask for the log-probabilities of the tokens.")
    top_logprobs: int | None = Field(
        None, ge=0, le=20, description="Alternatives per token (needs logprobs=True); "
                                       "AlpacaEval 2.0 uses 5.")

    @model_validator(mode="after")
    def _top_logprobs_need_logprobs(self) -> SamplingParams:
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError(f"top_logprobs={self.top_logprobs} needs logprobs=True; set "
                             "logprobs=True or drop top_logprobs.")
        return self


class JudgeClientConfig(BaseModel):
    """Where the judge is and how to call it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(description="Endpoint root including /v1, e.g. "
                                      "http://127.0.0.1:8000/v1; /chat/completions is added.")
    model: str = Field(min_length=1, description="Judge model name sent in each request.")
    api_key_env: str | None = Field(
        None, description="Name of the environment variable holding the API key.")
    api_key_file: Path | None = Field(
        None, description="File holding the API key (surrounding whitespace ignored).")
    max_concurrency: int = Field(8, ge=1, le=512, description="Most requests in flight.")
    max_retries: int = Field(5, ge=0, le=50, description="Retries after the first try.")
    timeout_s: float = Field(120.0, gt=0.0,
                             description="Socket timeout per request (connect and each read).")
    backoff_initial_s: float = Field(1.0, ge=0.0, description="Delay before the 1st retry.")
    backoff_max_s: float = Field(60.0, ge=0.0, description="Cap of the exponential delay.")
    retry_after_max_s: float = Field(
        300.0, ge=0.0, description="Cap on a server's Retry-After wait.")
    cache_path: Path | None = Field(
        None, description="JSONL judgment cache; None disables caching.")
    sampling: SamplingParams = Field(default_factory=SamplingParams,
                                     description="Default sampling parameters.")

    @model_validator(mode="after")
    def _check(self) -> JudgeClientConfig:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got "
                             f"{self.base_url!r}; give the endpoint root, e.g. "
                             "http://127.0.0.1:8000/v1.")
        if self.api_key_env is not None and self.api_key_file is not None:
            raise ValueError("set one of api_key_env and api_key_file, not both.")
        return self


@dataclass(frozen=True)
class JudgeResult:
    """The outcome of one request, in the order the requests were given."""

    ok: bool
    content: str | None  # the reply text when ok
    choice: dict[str, Any] | None  # the first element of "choices" (logprobs included)
    error: str | None  # why it failed, when not ok
    attempts: int  # HTTP attempts made (0 for a cache hit)
    cached: bool


class _ApiKey:
    """Holds the key; shows up as *** anywhere it might be printed."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return _REDACTED

    __str__ = __repr__


def _read_api_key(config: JudgeClientConfig) -> _ApiKey | None:
    if config.api_key_env is not None:
        value = os.environ.get(config.api_key_env)
        if not value:
            raise ValueError(f"environment variable {config.api_key_env!r} (api_key_env) is "
                             "unset or empty; export the judge's API key under that name.")
        return _ApiKey(value.strip())
    if config.api_key_file is not None:
        if not config.api_key_file.is_file():
            raise ValueError(f"api_key_file {str(config.api_key_file)!r} does not exist; "
                             "write the judge's API key into it or fix the path.")
        return _ApiKey(config.api_key_file.read_text(encoding="utf-8").strip())
    return None


def cache_key(model: str, messages: Sequence[Message], sampling: SamplingParams) -> str:
    """sha256 of the canonical JSON of (model, messages, sampling parameters)."""
    payload = {"model": model, "messages": list(messages),
               "sampling": sampling.model_dump(mode="json")}
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class JudgmentCache:
    """Append-only JSONL of ``{"key": ..., "choice": ...}``; one lock per file per process."""

    _locks: dict[Path, threading.Lock] = {}
    _locks_guard = threading.Lock()

    def __init__(self, path: Path) -> None:
        self.path = Path(path).resolve()
        with JudgmentCache._locks_guard:
            self._lock = JudgmentCache._locks.setdefault(self.path, threading.Lock())
        self._entries: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            self._load()

    def _load(self) -> None:
        for line_number, line in enumerate(self.path.read_text("utf-8").splitlines(), 1):
            try:
                record = json.loads(line)
                self._entries[record["key"]] = record["choice"]
            except (json.JSONDecodeError, KeyError, TypeError):
                # A line cut short by a crash mid-write: that judgment is simply redone.
                logger.warning("skipping unreadable line %d of judgment cache %s",
                               line_number, self.path)

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            return self._entries.get(key)

    def put(self, key: str, choice: dict[str, Any]) -> None:
        line = json.dumps({"key": key, "choice": choice}, ensure_ascii=False)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")
            self._entries[key] = choice


class _AttemptError(Exception):
    """One failed HTTP attempt: why, whether to retry, and the server's Retry-After."""

    def __init__(self, reason: str, retryable: bool, retry_after_s: float | None = None):
        super().__init__(reason)
        self.reason, self.retryable, self.retry_after_s = reason, retryable, retry_after_s


def _parse_retry_after(value: str | None) -> float | None:
    """Retry-After as delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


class JudgeClient:
    """Sends chat-completions requests to the judge; see the module docstring."""

    def __init__(self, config: JudgeClientConfig) -> None:
        self.config = config
        self._api_key = _read_api_key(config)
        self._url = config.base_url.rstrip("/") + "/chat/completions"
        self._cache = None if config.cache_path is None else JudgmentCache(config.cache_path)

    def __repr__(self) -> str:
        key = "none" if self._api_key is None else _REDACTED
        return f"JudgeClient(url={self._url!r}, model={self.config.model!r}, api_key={key})"

    def complete(self, requests: Sequence[Sequence[Message]],
                 sampling: SamplingParams | None = None) -> list[JudgeResult]:
        """Judge every message list; results come back in the same order.

        Identical requests (same cache key) are sent once. Cache hits send nothing.
        """
        sampling = self.config.sampling if sampling is None else sampling
        keys = [cache_key(self.config.model, messages, sampling) for messages in requests]
        results: dict[str, JudgeResult] = {}
        pending: dict[str, Sequence[Message]] = {}
        for key, messages in zip(keys, requests, strict=True):
            cached = self._cache.get(key) if self._cache is not None else None
            if cached is not None:
                results[key] = _result_from_choice(cached, attempts=0, cached=True)
            else:
                pending.setdefault(key, messages)
        if pending:
            results.update(self._send_all(pending, sampling))
        ordered = [results[key] for key in keys]
        self._log_summary(ordered)
        return ordered

    def _send_all(self, pending: dict[str, Sequence[Message]],
                  sampling: SamplingParams) -> dict[str, JudgeResult]:
        workers = min(self.config.max_concurrency, len(pending))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="judge") as pool:
            futures = {key: pool.submit(self._send_one, key, messages, sampling)
                       for key, messages in pending.items()}
            return {key: future.result() for key, future in futures.items()}

    def _send_one(self, key: str, messages: Sequence[Message],
                  sampling: SamplingParams) -> JudgeResult:
        body = json.dumps(self._payload(messages, sampling)).encode("utf-8")
        for attempt in range(1, self.config.max_retries + 2):
            try:
                choice = self._post(body)
                # Cached as soon as it arrives, so an interrupted run keeps what it paid for.
                if self._cache is not None:
                    self._cache.put(key, choice)
                return _result_from_choice(choice, attempts=attempt, cached=False)
            except _AttemptError as error:
                reason = self._redact(error.reason)
                if not error.retryable or attempt > self.config.max_retries:
                    logger.warning("judge request failed after %d attempt(s): %s", attempt,
                                   reason)
                    return JudgeResult(False, None, None, reason, attempt, cached=False)
                delay = self._delay(attempt, error.retry_after_s)
                logger.info("judge attempt %d failed (%s); retrying in %.2f s", attempt,
                            reason, delay)
                time.sleep(delay)
        raise RuntimeError("unreachable: the retry loop always returns")

    def _payload(self, messages: Sequence[Message], sampling: SamplingParams) -> dict:
        payload = {"model": self.config.model, "messages": list(messages),
                   **sampling.model_dump(exclude_none=True)}
        if not sampling.logprobs:
            payload.pop("logprobs")  # sent only when wanted; false is the API's default
        return payload

    def _post(self, body: bytes) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.reveal()}"
        request = urllib.request.Request(self._url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            raise _http_attempt_error(error) from None
        except (OSError, http.client.HTTPException) as error:
            # OSError covers URLError, refused or reset connections and socket timeouts;
            # HTTPException covers a connection dropped mid-response.
            raise _AttemptError(f"connection error or timeout: {_describe(error)}",
                                retryable=True) from None
        return _first_choice(raw)

    def _delay(self, attempt: int, retry_after_s: float | None) -> float:
        if retry_after_s is not None:
            return min(retry_after_s, self.config.retry_after_max_s)
        ceiling = min(self.config.backoff_max_s,
                      self.config.backoff_initial_s * 2.0 ** (attempt - 1))
        # Jitter in [ceiling/2, ceiling]: spreads out clients that failed together.
        return ceiling * (0.5 + 0.5 * random.random())

    def _redact(self, text: str) -> str:
        if self._api_key is None or not self._api_key.reveal():
            return text
        return text.replace(self._api_key.reveal(), _REDACTED)

    @staticmethod
    def _log_summary(results: Sequence[JudgeResult]) -> None:
        failed = sum(not result.ok for result in results)
        hits = sum(result.cached for result in results)
        log = logger.warning if failed else logger.info
        log("judge: %d requests, %d from cache, %d failed", len(results), hits, failed)


def _describe(error: BaseException) -> str:
    reason = getattr(error, "reason", None)
    return f"{type(error).__name__}: {reason if reason is not None else error}"


def _http_attempt_error(error: urllib.error.HTTPError) -> _AttemptError:
    try:
        detail = error.read(500).decode("utf-8", errors="replace")
    except OSError:
        detail = ""
    retryable = error.code in _RETRYABLE_STATUS or error.code >= 500
    retry_after = _parse_retry_after(error.headers.get("Retry-After") if error.headers else None)
    return _AttemptError(f"HTTP {error.code}: {detail.strip()[:300]}", retryable, retry_after)


def _first_choice(raw: bytes) -> dict[str, Any]:
    try:
        choice = json.loads(raw)["choices"][0]
        if not isinstance(choice["message"]["content"], str):
            raise TypeError("message.content is not a string")
    except (json.JSONDecodeError, KeyError, IndexError, TypeError) as error:
        raise _AttemptError(f"malformed chat-completions response ({error!r}): "
                            f"{raw[:200]!r}", retryable=False) from None
    return choice


def _result_from_choice(choice: dict[str, Any], attempts: int, cached: bool) -> JudgeResult:
    return JudgeResult(True, choice["message"]["content"], choice, None, attempts, cached)
