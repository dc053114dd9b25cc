"""Answer generation for the benchmarks: one interface, two backends.

* ``vllm``: a Ray actor running in the evaluation environment (``.venv-eval``) holds a
  ``vllm.LLM`` and generates whole batches at once (``platform.evaluation.vllm_actors``).
* ``transformers``: Hugging Face ``generate`` in this process, for models vLLM cannot load.

Both take :class:`GenerationRequest` objects (a chat conversation ending in a user turn,
its sampling parameters) and return :class:`Generation` objects in the same order. The
chat is rendered with the model's own chat template; a prompt longer than the model's
context is cut from the left (the latest turns are kept) and flagged. Multi-turn
conversations (MT-Bench) are answered turn by turn: turn 2 is asked after the model's own
turn-1 answer (:func:`answer_conversations`).

Module top level imports only the standard library: the vLLM actor imports this module
inside ``.venv-eval``.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

logger = logging.getLogger(__name__)

Message = dict[str, str]

# The paper's sampling (SPEC §5); MT-Bench and Arena-Hard set their own temperatures.
PAPER_TEMPERATURE = 0.7
PAPER_TOP_P = 0.95
# SCORING_SPECS §1: a temperature below this means greedy decoding.
GREEDY_BELOW = 1e-4
# A prompt is cut so that at least this many new tokens fit in the context.
MIN_NEW_TOKENS = 16


@dataclass(frozen=True)
class GenerationRequest:
    """One completion of a conversation that ends in a user turn."""

    messages: tuple[Message, ...]
    max_tokens: int
    temperature: float = PAPER_TEMPERATURE
    top_p: float = PAPER_TOP_P
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.messages or self.messages[-1].get("role") != "user":
            raise ValueError(f"a generation request must end with a user turn; got roles "
                             f"{[m.get('role') for m in self.messages]}.")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}.")
        if not 0.0 < self.top_p <= 1.0 or self.temperature < 0.0:
            raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got temperature="
                             f"{self.temperature}, top_p={self.top_p}.")

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_BELOW

    def to_wire(self) -> dict[str, Any]:
        """Plain data for the vLLM actor, which runs in another environment."""
        return {"messages": [dict(m) for m in self.messages], **sampling_kwargs(self)}


@dataclass(frozen=True)
class Generation:
    """A generated answer and what it cost."""

    text: str
    n_tokens: int  # generated tokens, in the model's tokenizer
    finish_reason: str  # "stop", "length", ...
    prompt_tokens: int
    prompt_truncated: bool = False  # the conversation was cut to fit the context


def sampling_kwargs(request: GenerationRequest) -> dict[str, Any]:
    """vLLM ``SamplingParams`` keyword arguments; greedy below ``GREEDY_BELOW``."""
    if request.greedy:
        return {"temperature": 0.0, "top_p": 1.0, "max_tokens": request.max_tokens,
                "seed": request.seed}
    return {"temperature": request.temperature, "top_p": request.top_p,
            "max_tokens": request.max_tokens, "seed": request.seed}


def hf_generate_kwargs(request: GenerationRequest) -> dict[str, Any]:
    """Keyword arguments of ``model.generate`` equivalent to :func:`sampling_kwargs`."""
    if request.greedy:
        return {"do_sample": False, "max_new_tokens": request.max_tokens}
    return {"do_sample": True, "temperature": request.temperature, "top_p": request.top_p,
            "top_k": 0, "max_new_tokens": request.max_tokens}


def fit_prompt(prompt_ids: Sequence[int], max_model_len: int, max_tokens: int
               ) -> tuple[list[int], int, bool]:
    """(prompt ids, max new tokens, truncated) that fit in ``max_model_len`` tokens.

    The answer keeps its requested room when the prompt allows; otherwise it shrinks to
    what is left, but never below ``MIN_NEW_TOKENS``: the prompt is cut from the left
    (the oldest text goes) to make that room.
    """
    if max_model_len <= MIN_NEW_TOKENS:
        raise ValueError(f"max_model_len {max_model_len} leaves no room for an answer; "
                         f"it must exceed {MIN_NEW_TOKENS}.")
    ids = list(prompt_ids)
    room = max_model_len - len(ids)
    if room >= MIN_NEW_TOKENS:
        return ids, min(max_tokens, room), False
    keep = max_model_len - min(max_tokens, MIN_NEW_TOKENS)
    return ids[-keep:], max_model_len - keep, True


def render_chat(tokenizer: Any, messages: Sequence[Message]) -> str:
    """The model's chat template applied to ``messages``, opened for the assistant."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"the tokenizer of {getattr(tokenizer, 'name_or_path', '?')} has no chat "
            "template; the benchmarks ask questions as chat turns. Save the model with "
            "a chat_template (tokenizer_config.json or chat_template.jinja).")
    return tokenizer.apply_chat_template(list(messages), tokenize=False,
                                         add_generation_prompt=True)


@dataclass(frozen=True)
class Conversation:
    """User turns asked one after another, each after the model's previous answer."""

    key: str  # question id, for error messages
    turns: tuple[str, ...]
    max_tokens: int
    temperature: float = PAPER_TEMPERATURE
    top_p: float = PAPER_TOP_P
    history: tuple[Message, ...] = field(default=())  # shown before the first turn


class Generator(Protocol):
    """What the benchmarks need of a backend."""

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]: ...

    def close(self) -> None: ...


def turn_messages(conversation: Conversation, answers: Sequence[str]) -> tuple[Message, ...]:
    """The messages that ask turn ``len(answers) + 1``, with the earlier answers in place."""
    turn = len(answers)
    if turn >= len(conversation.turns):
        raise ValueError(f"conversation {conversation.key} has {len(conversation.turns)} "
                         f"turn(s); cannot ask turn {turn + 1}.")
    messages = list(conversation.history)
    for question, answer in zip(conversation.turns[:turn], answers, strict=True):
        messages += [{"role": "user", "content": question},
                     {"role": "assistant", "content": answer}]
    messages.append({"role": "user", "content": conversation.turns[turn]})
    return tuple(messages)


def conversation_seed(key: str, seed: int) -> int:
    """The sampling seed of a conversation: from its key, not its position in the batch,
    so a question gets the same answer whatever else is evaluated with it (and a re-run
    asks the judge the same questions, which its cache then answers)."""
    return seed + zlib.crc32(key.encode("utf-8")) % 2**31


def answer_conversations(generator: Generator, conversations: Sequence[Conversation],
                         seed: int = 0) -> list[list[Generation]]:
    """Every turn of every conversation, one batch per turn index."""
    answers: list[list[Generation]] = [[] for _ in conversations]
    depth = max((len(c.turns) for c in conversations), default=0)
    for turn in range(depth):
        asked = [i for i, c in enumerate(conversations) if len(c.turns) > turn]
        requests = [GenerationRequest(
            turn_messages(conversations[i], [g.text for g in answers[i]]),
            max_tokens=conversations[i].max_tokens,
            temperature=conversations[i].temperature, top_p=conversations[i].top_p,
            seed=conversation_seed(conversations[i].key, seed)) for i in asked]
        started = time.monotonic()
        for i, generation in zip(asked, generator.generate(requests), strict=True):
            answers[i].append(generation)
        logger.info("generated turn %d of %d conversation(s) in %.1f s", turn + 1,
                    len(asked), time.monotonic() - started)
    truncated = sum(g.prompt_truncated for row in answers for g in row)
    if truncated:
        logger.warning("%d prompt(s) were longer than the model's context and were cut "
                       "from the left", truncated)
    return answers


def generation_record(generation: Generation) -> dict[str, Any]:
    return asdict(generation)
