"""The judge client against a real chat-completions server on 127.0.0.1.

The server is an ``http.server.ThreadingHTTPServer`` in a background thread. What it does
with a request is written in the request itself: the last user message is a list of
behaviours, one per attempt (``"500,ok"``: fail with 500, then answer; a ``" #n"`` suffix
only makes requests distinct), so the script holds however the client's threads
interleave. It counts requests, records the headers
and the largest number of requests in flight at once.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pydantic import ValidationError

from platform.evaluation.judge_client import JudgeClient, JudgeClientConfig, SamplingParams
from platform.evaluation.verdicts import alpaca_eval_probability_m, top_logprobs_of_reply

API_KEY = "sk-test-7f3a9c-SECRET"


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.release = threading.Event()  # ends any deliberately hung response
        self.attempts: Counter[str] = Counter()  # script -> requests seen
        self.bodies: list[dict] = []
        self.authorization: list[str | None] = []
        self.in_flight = self.max_in_flight = 0


class _Handler(BaseHTTPRequestHandler):
    state: _State  # set on a per-server subclass

    def log_message(self, *args: object) -> None:
        pass  # keep test output clean

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        script = body["messages"][-1]["content"]
        with self.state.lock:
            self.state.attempts[script] += 1
            attempt = self.state.attempts[script]
            self.state.bodies.append(body)
            self.state.authorization.append(self.headers.get("Authorization"))
            self.state.in_flight += 1
            self.state.max_in_flight = max(self.state.max_in_flight, self.state.in_flight)
        try:
            steps = script.split(" #")[0].split(",")  # "#n" only tells requests apart
            self._act(steps[min(attempt, len(steps)) - 1], body, script)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up on a hung response
        finally:
            with self.state.lock:
                self.state.in_flight -= 1

    def _act(self, step: str, body: dict, script: str) -> None:
        if step == "hang":
            self.state.release.wait(5.0)
            return
        if step == "slow":
            time.sleep(0.15)
        if step in ("ok", "slow"):
            return self._send(200, _completion(f"judged: {script}", body))
        if step == "429":
            return self._send(429, {"error": "rate limited"}, {"Retry-After": "1"})
        if step == "echo-auth-401":  # a careless server that echoes the credentials
            return self._send(401, {"error": f"bad key {self.headers.get('Authorization')}"})
        self._send(int(step), {"error": f"status {step}"})

    def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _completion(text: str, body: dict) -> dict:
    choice = {"index": 0, "finish_reason": "stop",
              "message": {"role": "assistant", "content": text}}
    if body.get("logprobs"):
        top = [{"token": "M", "logprob": math.log(0.75)}, {"token": "m", "logprob": math.log(0.25)},
               {"token": "The", "logprob": -9.0}][: body.get("top_logprobs", 0)]
        choice["logprobs"] = {"content": [{"token": "M", "logprob": math.log(0.75),
                                           "top_logprobs": top}]}
    return {"id": "test", "object": "chat.completion", "model": body["model"],
            "choices": [choice]}


@pytest.fixture
def server():
    state = _State()
    handler = type("Handler", (_Handler,), {"state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    httpd.handle_error = lambda request, address: None  # a dropped client is expected
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", state
    state.release.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def _client(base_url: str, tmp_path: Path, **overrides) -> JudgeClient:
    key_file = tmp_path / "judge.key"
    key_file.write_text(API_KEY + "\n")
    settings = {"base_url": base_url, "model": "judge-test", "api_key_file": key_file,
                "max_concurrency": 4, "max_retries": 3, "timeout_s": 2.0,
                "backoff_initial_s": 0.01, "backoff_max_s": 0.05, **overrides}
    return JudgeClient(JudgeClientConfig(**settings))


def _ask(script: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "judge"}, {"role": "user", "content": script}]


def test_success_sends_the_protocol_and_the_key(server, tmp_path):
    url, state = server
    (result,) = _client(url, tmp_path).complete([_ask("ok")])
    assert result.ok and result.content == "judged: ok" and result.attempts == 1
    assert not result.cached and result.error is None
    (body,) = state.bodies
    assert body["model"] == "judge-test" and body["messages"] == _ask("ok")
    assert body["temperature"] == 0.0 and body["max_tokens"] == 2048
    assert "logprobs" not in body and "top_logprobs" not in body
    assert state.authorization == [f"Bearer {API_KEY}"]


def test_429_waits_for_retry_after_then_succeeds(server, tmp_path):
    url, state = server
    started = time.monotonic()
    (result,) = _client(url, tmp_path).complete([_ask("429,ok")])
    elapsed = time.monotonic() - started
    assert result.ok and result.attempts == 2 and state.attempts["429,ok"] == 2
    assert 1.0 <= elapsed < 3.0  # Retry-After: 1, not the 0.01 s backoff


def test_500_is_retried(server, tmp_path):
    url, state = server
    (result,) = _client(url, tmp_path).complete([_ask("500,503,ok")])
    assert result.ok and result.attempts == 3 and state.attempts["500,503,ok"] == 3


def test_hung_response_trips_the_timeout_then_succeeds(server, tmp_path):
    url, state = server
    started = time.monotonic()
    (result,) = _client(url, tmp_path, timeout_s=0.3).complete([_ask("hang,ok")])
    assert result.ok and result.attempts == 2
    assert time.monotonic() - started < 2.0  # the 5 s hang was cut at 0.3 s


def test_permanent_failures_are_reported_not_dropped(server, tmp_path):
    url, state = server
    results = _client(url, tmp_path, max_retries=2).complete(
        [_ask("ok"), _ask("500"), _ask("400"), _ask("ok #2")])
    assert [result.ok for result in results] == [True, False, False, True]
    assert results[1].attempts == 3 and "HTTP 500" in results[1].error  # 1 try + 2 retries
    assert results[2].attempts == 1 and "HTTP 400" in results[2].error  # not retryable
    assert results[1].content is None and results[1].choice is None
    assert state.attempts["500"] == 3 and state.attempts["400"] == 1


def test_unreachable_endpoint_is_a_reported_connection_failure(tmp_path):
    with socket.socket() as probe:  # a free loopback port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = _client(f"http://127.0.0.1:{port}/v1", tmp_path, max_retries=1)
    (result,) = client.complete([_ask("ok")])
    assert not result.ok and result.attempts == 2 and "connection error" in result.error


def test_cache_makes_a_rerun_free(server, tmp_path):
    url, state = server
    cache = tmp_path / "judgments.jsonl"
    requests = [_ask(f"ok #{i}") for i in range(5)] + [_ask("ok #0")]  # one duplicate
    first = _client(url, tmp_path, cache_path=cache).complete(requests)
    assert all(result.ok and not result.cached for result in first)
    assert len(state.bodies) == 5  # the duplicate was sent once
    assert len(cache.read_text().splitlines()) == 5

    rerun = _client(url, tmp_path, cache_path=cache).complete(requests)  # a fresh client
    assert len(state.bodies) == 5  # nothing new reached the server
    assert all(result.cached and result.attempts == 0 for result in rerun)
    assert [r.content for r in rerun] == [r.content for r in first]

    warmer = SamplingParams(temperature=0.7)  # other sampling parameters: another key
    _client(url, tmp_path, cache_path=cache).complete(requests[:1], sampling=warmer)
    assert len(state.bodies) == 6 and state.bodies[-1]["temperature"] == 0.7


def test_failures_are_not_cached(server, tmp_path):
    url, state = server
    cache = tmp_path / "judgments.jsonl"
    (failed,) = _client(url, tmp_path, cache_path=cache, max_retries=0).complete([_ask("500")])
    assert not failed.ok and not cache.exists()


def test_concurrency_limit_is_respected_and_cache_writes_stay_whole(server, tmp_path):
    url, state = server
    cache = tmp_path / "judgments.jsonl"
    results = _client(url, tmp_path, max_concurrency=3, cache_path=cache).complete(
        [_ask(f"slow #{i}") for i in range(12)])
    assert all(result.ok for result in results)
    assert state.max_in_flight == 3  # reached, never exceeded
    # 3 threads appended to one file: 12 whole lines, 12 distinct keys.
    records = [json.loads(line) for line in cache.read_text().splitlines()]
    assert len({record["key"] for record in records}) == len(records) == 12


def test_logprobs_are_requested_and_returned(server, tmp_path):
    url, state = server
    sampling = SamplingParams(temperature=1.0, max_tokens=1, logprobs=True, top_logprobs=5)
    (result,) = _client(url, tmp_path).complete([_ask("ok")], sampling=sampling)
    assert state.bodies[0]["logprobs"] is True and state.bodies[0]["top_logprobs"] == 5
    top = top_logprobs_of_reply(result.choice)
    assert alpaca_eval_probability_m(top) == pytest.approx(0.25)


def test_api_key_stays_out_of_logs_reprs_and_errors(server, tmp_path, monkeypatch, caplog):
    url, state = server
    monkeypatch.setenv("JUDGE_TEST_KEY", API_KEY)
    caplog.set_level(logging.DEBUG)
    client = _client(url, tmp_path, api_key_file=None, api_key_env="JUDGE_TEST_KEY",
                     max_retries=0)
    results = client.complete([_ask("echo-auth-401"), _ask("500"), _ask("ok")])
    assert state.authorization == [f"Bearer {API_KEY}"] * 3
    assert "HTTP 401" in results[0].error and "Bearer ***" in results[0].error
    texts = [repr(client), repr(client.config), str(client.config), caplog.text,
             *(str(result) for result in results)]
    assert caplog.text  # the failures were logged
    assert not any(API_KEY in text for text in texts)


def test_config_is_strict(tmp_path):
    with pytest.raises(ValidationError, match="extra"):
        JudgeClientConfig(base_url="http://127.0.0.1:1/v1", model="m", retries=3)
    with pytest.raises(ValidationError, match="needs logprobs=True"):
        SamplingParams(top_logprobs=5)
    with pytest.raises(ValidationError, match="http:// or https://"):
        JudgeClientConfig(base_url="127.0.0.1:8000", model="m")
    with pytest.raises(ValueError, match="'JUDGE_TEST_UNSET_KEY'.*unset"):
        JudgeClient(JudgeClientConfig(base_url="http://127.0.0.1:1/v1", model="m",
                                      api_key_env="JUDGE_TEST_UNSET_KEY"))
