"""Each benchmark's judging and scoring against a real chat-completions server on loopback.

The answers are fixed here and the judge is a small HTTP server whose verdicts follow
from what it is shown (an answer containing GOOD wins, FAIL500 fails the request, ...),
so every count and score below is worked out by hand from the rules of SCORING_SPECS.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from platform.evaluation.benchmarks import BENCHMARK_CLASSES
from platform.evaluation.generation import Generation
from platform.evaluation.judge_client import JudgeClient, JudgeClientConfig
from platform.evaluation.judging import Judge
from platform.evaluation.settings import load_settings
from platform.evaluation.verdicts import alpaca_eval_is_switched

SHARED_DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
Decide = Callable[[dict], tuple[int, dict]]


def _choice(content: str, top: list[tuple[str, float]] | None = None) -> dict:
    choice = {"index": 0, "message": {"role": "assistant", "content": content},
              "finish_reason": "stop"}
    if top is not None:
        choice["logprobs"] = {"content": [{"token": top[0][0], "logprob": top[0][1],
                                           "top_logprobs": [{"token": t, "logprob": lp}
                                                            for t, lp in top]}]}
    return choice


class _Server:
    """A chat-completions endpoint; ``decide`` maps a request body to (status, choice)."""

    def __init__(self, decide: Decide) -> None:
        self.bodies: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.bodies.append(body)
                status, choice = decide(body)
                data = json.dumps({"choices": [choice]} if status == 200 else choice).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def judge(self) -> Judge:
        config = JudgeClientConfig(base_url=self.base_url, model="test-judge", max_retries=0,
                                   max_concurrency=4)
        return Judge(JudgeClient(config), None, {"eval.judge.model": "test-judge"})


@pytest.fixture
def serve():
    servers: list[_Server] = []

    def start(decide: Decide) -> _Server:
        servers.append(_Server(decide))
        return servers[-1]

    yield start
    for server in servers:
        server.httpd.shutdown()


def _benchmark(name: str, *words: str):
    config = load_settings(["model=m", "judge.base_url=http://127.0.0.1:1/v1",
                            "judge.model=j", f"data_dir={SHARED_DATA}", *words])
    benchmark = BENCHMARK_CLASSES[name](config)
    benchmark.load()
    return benchmark


def _answers(*texts: str | tuple[str, ...]) -> list[list[Generation]]:
    rows = [(text,) if isinstance(text, str) else text for text in texts]
    return [[Generation(t, len(t.split()), "stop", 5) for t in row] for row in rows]


def _slot_with(word: str, user: str) -> str | None:
    """Which answer slot (A or B) of a judge prompt shows ``word``, if any."""
    if word not in user:
        return None
    return "A" if user.index(word) < user.index("Assistant B's") else "B"


def _failure() -> tuple[int, dict]:
    return 500, {"error": "judge overloaded"}


def test_pairwise_counts_wins_losses_ties_and_failures(serve, tmp_path, ray_cluster):
    data = tmp_path / "test.jsonl"
    rows = [{"prompt": f"question {i}", "chosen": f"reference {i}", "rejected": "no"}
            for i in range(5)]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    benchmark = _benchmark("pairwise", f"pairwise.data=[{data}]", "limit=4")
    assert [c.turns for c in benchmark.conversations()] == [(f"question {i}",)
                                                            for i in range(4)]

    def decide(body: dict) -> tuple[int, dict]:
        user = body["messages"][1]["content"]
        if "FAIL500" in user:
            return _failure()
        if "BIASED" in user:
            return 200, _choice("Both fine. [[A]]")  # position bias: A in both games
        return 200, _choice(f"Explanation. [[{_slot_with('GOOD', user) or 'B'}]]")

    server = serve(decide)
    result = benchmark.score(_answers("GOOD answer", "plain", "BIASED", "FAIL500"),
                             server.judge())
    assert len(server.bodies) == 8
    shown = [body["messages"][1]["content"] for body in server.bodies]
    assert sorted(_slot_with("GOOD", user) for user in shown if "GOOD" in user) == ["A", "B"]
    counts = result.counts()
    assert (counts["n_judgments"], counts["n_failed"], counts["n_scored"]) == (8, 2, 6)
    # Pair 0: both games name the model, a win. Pair 1: game 1 (model in A) names B, the
    # reference; game 2 (reference in A) names B, the model: they disagree, a tie. Pair 2:
    # A twice, a tie. Pair 3 fails and is dropped.
    assert result.metrics["pairwise/win_rate"] == pytest.approx(1 / 3)
    assert result.metrics["pairwise/loss_rate"] == 0.0
    assert result.metrics["pairwise/win_rate_adjusted"] == pytest.approx(2 / 3)
    assert {r["error"][:8] for r in result.unjudged()} == {"HTTP 500"}


def test_mt_bench_rates_turns_against_references(serve):
    benchmark = _benchmark("mt_bench")
    writing = next(q for q in benchmark.questions if q["category"] == "writing")
    math_q = next(q for q in benchmark.questions if q["category"] == "math")
    benchmark.questions = [writing, math_q]
    assert [c.temperature for c in benchmark.conversations()] == [0.7, 0.0]

    def decide(body: dict) -> tuple[int, dict]:
        user = body["messages"][1]["content"]
        # The answer being rated: the last one shown (turn 2 shows the whole conversation).
        marker = "### Assistant A:" if "### Assistant A:" in user else "Assistant's Answer]"
        shown = user.split(marker)[-2 if marker.endswith("]") else -1]
        return 200, _choice("Rating: [[8]]" if "GOOD" in shown else "I cannot rate it.")

    server = serve(decide)
    result = benchmark.score(_answers(("GOOD poem", "meh"), ("GOOD sum", "GOOD again")),
                             server.judge())
    reference = json.loads((SHARED_DATA / "mt_bench/reference_answer/gpt-4.jsonl")
                           .read_text().splitlines()[int(math_q["question_id"]) - 101])
    assert reference["question_id"] == math_q["question_id"]
    math_turn_2 = server.bodies[3]["messages"][1]["content"]
    assert reference["choices"][0]["turns"][1] in math_turn_2  # both references shown
    assert all(body["temperature"] == 0.0 and body["max_tokens"] == 2048
               for body in server.bodies)
    assert result.counts()["n_unparseable"] == 1 and result.counts()["n_scored"] == 3
    assert result.metrics == {"mt_bench/score": 8.0, "mt_bench/turn_1": 8.0,
                              "mt_bench/turn_2": 8.0}


def test_alpaca_eval_reads_the_preference_from_logprobs(serve):
    benchmark = _benchmark("alpaca_eval", "limit=7",
                           "alpaca_eval.compare_with=[alpaca-7b]")
    rows = [row for _, row in benchmark.rows]

    def decide(body: dict) -> tuple[int, dict]:
        assert body["logprobs"] is True and body["top_logprobs"] == 5
        if "NOLOGPROB" in body["messages"][1]["content"]:
            return 200, _choice("x", [("x", -0.1), ("y", -2.0)])
        return 200, _choice("m", [("m", math.log(0.8)), ("M", math.log(0.2))])

    server = serve(decide)
    outputs = [rows[0]["output"], "NOLOGPROB", "short", "a longer answer " * 5, "b", "c c",
               "d" * 40]
    result = benchmark.score(_answers(*outputs), server.judge())
    assert len(server.bodies) == 6  # identical outputs are not judged
    # p_m = 0.8: the judge prefers what it was shown as "m", the baseline unless switched.
    expected = [1.5] + [1.8 if alpaca_eval_is_switched(row["instruction"]) else 1.2
                        for row in rows[2:]]
    assert result.metrics["alpaca_eval/win_rate"] == pytest.approx(
        100 * (sum(expected) / len(expected) - 1))
    assert result.counts()["n_unparseable"] == 1 and result.counts()["n_scored"] == 5
    assert 0.0 < result.metrics["alpaca_eval/length_controlled_winrate"] < 100.0
    assert "alpaca_eval/lc_win_rate_vs/alpaca-7b" in result.metrics


def test_arena_hard_continues_a_judgment_without_a_verdict(serve):
    benchmark = _benchmark("arena_hard", "limit=2")
    assert [c.temperature for c in benchmark.conversations()] == [0.0, 0.0]

    def decide(body: dict) -> tuple[int, dict]:
        messages = body["messages"]
        user = messages[1]["content"]
        if "SLOW" in user and len(messages) == 2:
            return 200, _choice("Let me compare them carefully.")  # no label yet
        if slot := _slot_with("GOOD", user):
            return 200, _choice(f"My final verdict: [[{slot}>>{'B' if slot == 'A' else 'A'}]]")
        model_slot = _slot_with("weak", user)
        return 200, _choice(f"[[{'B' if model_slot == 'A' else 'A'}>{model_slot}]]")

    server = serve(decide)
    result = benchmark.score(_answers("GOOD SLOW answer", "weak answer"), server.judge())
    continued = [b for b in server.bodies if len(b["messages"]) == 4]
    assert len(continued) == 2  # both games of question 0 needed a second attempt
    assert continued[0]["messages"][3]["content"] == (
        "continue your judgment and finish by outputting a final verdict label")
    assert result.counts()["n_scored"] == 4
    # Question 0: two strong wins (weight 3 each); question 1: two slight losses.
    assert result.metrics["arena_hard/score"] == pytest.approx(100 * 6 / 8, abs=1e-6)
    assert result.metrics["arena_hard/ci_lower"] <= result.metrics["arena_hard/score"]
    assert result.metrics["arena_hard/avg_tokens"] == pytest.approx((3 + 2) / 2)
    game = result.judgments[0]
    assert "Let me compare" in game["reply"] and "[[B>>A]]" in game["reply"]
