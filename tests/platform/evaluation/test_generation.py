"""Request building of the generators: sampling, prompt fitting, multi-turn conversations.

The transformers backend runs for real on the builtin tiny model; the vLLM backend's
request path is the same code (``to_wire`` and ``fit_prompt``) and runs for real in the
end-to-end test.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from platform.evaluation.generation import (
    GREEDY_BELOW,
    MIN_NEW_TOKENS,
    PAPER_TEMPERATURE,
    PAPER_TOP_P,
    Conversation,
    Generation,
    GenerationRequest,
    answer_conversations,
    conversation_seed,
    fit_prompt,
    hf_generate_kwargs,
    render_chat,
    sampling_kwargs,
    turn_messages,
)
from platform.evaluation.vllm_actors import server_command

USER = {"role": "user", "content": "What is 2 + 2?"}


def test_paper_sampling_is_the_default():
    request = GenerationRequest((USER,), max_tokens=64)
    assert (request.temperature, request.top_p) == (PAPER_TEMPERATURE, PAPER_TOP_P) \
        == (0.7, 0.95)
    assert sampling_kwargs(request) == {"temperature": 0.7, "top_p": 0.95, "max_tokens": 64,
                                        "seed": 0}
    assert hf_generate_kwargs(request) == {"do_sample": True, "temperature": 0.7,
                                           "top_p": 0.95, "top_k": 0, "max_new_tokens": 64}


@pytest.mark.parametrize("temperature", [0.0, GREEDY_BELOW / 2])
def test_a_temperature_below_the_threshold_is_greedy(temperature):
    request = GenerationRequest((USER,), max_tokens=8, temperature=temperature, seed=3)
    assert request.greedy
    assert sampling_kwargs(request) == {"temperature": 0.0, "top_p": 1.0, "max_tokens": 8,
                                        "seed": 3}
    assert hf_generate_kwargs(request) == {"do_sample": False, "max_new_tokens": 8}


def test_stem_temperature_samples():
    request = GenerationRequest((USER,), max_tokens=8, temperature=0.1)
    assert not request.greedy and sampling_kwargs(request)["temperature"] == 0.1


def test_the_wire_form_holds_messages_and_sampling():
    request = GenerationRequest((USER,), max_tokens=5, temperature=0.2, top_p=0.9, seed=7)
    assert request.to_wire() == {"messages": [USER], "temperature": 0.2, "top_p": 0.9,
                                 "max_tokens": 5, "seed": 7}


@pytest.mark.parametrize("messages, max_tokens, problem", [
    ((), 5, "end with a user turn"),
    (({"role": "assistant", "content": "hi"},), 5, "end with a user turn"),
    ((USER,), 0, "max_tokens"),
])
def test_bad_requests_are_refused(messages, max_tokens, problem):
    with pytest.raises(ValueError, match=problem):
        GenerationRequest(messages, max_tokens=max_tokens)


def test_a_prompt_that_fits_keeps_everything():
    assert fit_prompt(range(10), max_model_len=100, max_tokens=50) == (list(range(10)), 50,
                                                                      False)


def test_the_answer_shrinks_to_the_room_left():
    ids, max_tokens, truncated = fit_prompt(range(80), max_model_len=100, max_tokens=50)
    assert (len(ids), max_tokens, truncated) == (80, 20, False)


def test_a_long_prompt_loses_its_oldest_tokens():
    ids, max_tokens, truncated = fit_prompt(range(200), max_model_len=100, max_tokens=50)
    assert truncated and max_tokens == MIN_NEW_TOKENS
    assert ids == list(range(200 - (100 - MIN_NEW_TOKENS), 200))  # the end is kept
    assert len(ids) + max_tokens == 100


def test_a_context_too_small_for_an_answer_is_an_error():
    with pytest.raises(ValueError, match="no room for an answer"):
        fit_prompt([1], max_model_len=MIN_NEW_TOKENS, max_tokens=4)


def test_turn_two_follows_the_models_own_first_answer():
    conversation = Conversation("81", ("Write a poem.", "Now shorten it."), max_tokens=9,
                                history=({"role": "system", "content": "Be brief."},))
    assert turn_messages(conversation, []) == (
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Write a poem."})
    assert turn_messages(conversation, ["A poem."])[1:] == (
        {"role": "user", "content": "Write a poem."},
        {"role": "assistant", "content": "A poem."},
        {"role": "user", "content": "Now shorten it."})
    with pytest.raises(ValueError, match="cannot ask turn 3"):
        turn_messages(conversation, ["a", "b"])


class _Recorder:
    """A generator that answers with the question it was asked, and records the batches."""

    def __init__(self) -> None:
        self.batches: list[list[GenerationRequest]] = []

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        self.batches.append(list(requests))
        return [Generation(f"answer to {r.messages[-1]['content']}", 3, "stop", 10)
                for r in requests]

    def close(self) -> None:
        pass


def test_conversations_are_answered_in_one_batch_per_turn():
    conversations = [Conversation("a", ("a1", "a2"), max_tokens=4, temperature=0.0),
                     Conversation("b", ("b1",), max_tokens=6, temperature=0.7, top_p=0.9)]
    recorder = _Recorder()
    answers = answer_conversations(recorder, conversations, seed=10)
    assert [[g.text for g in row] for row in answers] == [
        ["answer to a1", "answer to a2"], ["answer to b1"]]
    first, second = recorder.batches
    assert [(r.max_tokens, r.temperature, r.top_p) for r in first] == [
        (4, 0.0, PAPER_TOP_P), (6, 0.7, 0.9)]
    assert second[0].messages[1] == {"role": "assistant", "content": "answer to a1"}
    assert first[0].seed == second[0].seed == conversation_seed("a", 10)


def test_a_questions_seed_does_not_depend_on_what_else_is_asked():
    alone, together = _Recorder(), _Recorder()
    answer_conversations(alone, [Conversation("q7", ("x",), max_tokens=4)], seed=3)
    answer_conversations(together, [Conversation("q1", ("y",), max_tokens=4),
                                    Conversation("q7", ("x",), max_tokens=4)], seed=3)
    assert alone.batches[0][0].seed == together.batches[0][1].seed
    assert together.batches[0][0].seed != together.batches[0][1].seed


def test_the_vllm_server_listens_on_loopback_only():
    command = server_command("/venv/bin/python", "/models/judge", "judge", 8123, 1024,
                             "auto", 0, ["--max-logprobs", "5"])
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--port") + 1] == "8123"
    assert command[command.index("--served-model-name") + 1] == "judge"
    assert command[command.index("--max-model-len") + 1] == "1024"
    assert command[-2:] == ["--max-logprobs", "5"]


def test_the_chat_template_renders_the_turns(tiny_model_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    text = render_chat(tokenizer, [USER])
    assert text == "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n"
    tokenizer.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        render_chat(tokenizer, [USER])


def test_the_transformers_backend_answers_like_the_vllm_one(tiny_model_path):
    from platform.evaluation.backends import TransformersGenerator

    generator = TransformersGenerator(tiny_model_path, trust_remote_code=False,
                                      max_model_len=64)
    requests = [GenerationRequest((USER,), max_tokens=8, temperature=0.0),
                GenerationRequest(({"role": "user", "content": "x " * 200},), max_tokens=30)]
    short, long = generator.generate(requests)
    generator.close()
    assert isinstance(short.text, str) and 1 <= short.n_tokens <= 8
    assert short.finish_reason in ("stop", "length") and not short.prompt_truncated
    # 200 words do not fit in 64 tokens: cut from the left, MIN_NEW_TOKENS left to answer.
    assert long.prompt_truncated and long.prompt_tokens == 64 - MIN_NEW_TOKENS
    assert long.n_tokens <= MIN_NEW_TOKENS
