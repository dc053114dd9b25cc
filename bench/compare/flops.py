"""Model-FLOPs utilisation: the machine's matrix-multiply rate and a training step's FLOPs.

The peak is measured, not taken from a data sheet: fp32 ``torch.matmul`` of square
matrices on every core, sustained for a few seconds, the median of several rounds. A
step's model FLOPs count the work the objective needs, not what an implementation happens
to do: 2 FLOPs per multiply-add of every linear layer (the output head included, the
embedding lookup excluded) per token in a forward pass, twice that in a backward pass,
plus causal attention (query-key scores and the weighted sum of values). So padding,
recomputation and any extra passes an implementation makes lower its utilisation instead
of raising its count.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass

logger = logging.getLogger(__name__)


def matmul_flops_per_s(size: int = 1024, rounds: int = 5, round_s: float = 1.0,
                       threads: int | None = None) -> float:
    """Sustained fp32 matrix-multiply FLOP/s of this machine (median over ``rounds``)."""
    import torch

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        left, right = torch.randn(size, size), torch.randn(size, size)
        torch.matmul(left, right)  # warm-up: thread pool and caches
        rates = []
        for _ in range(rounds):
            count, started = 0, time.perf_counter()
            while time.perf_counter() - started < round_s:
                torch.matmul(left, right)
                count += 1
            rates.append(2 * size**3 * count / (time.perf_counter() - started))
    finally:
        torch.set_num_threads(previous)
    return statistics.median(rates)


@dataclass(frozen=True)
class ModelShape:
    """What the FLOPs count needs of a decoder: linear weights, layers, attention width."""

    linear_parameters: int  # weights of every nn.Linear, output head included
    num_layers: int
    attention_width: int  # heads x head dimension of the queries

    def forward_flops_per_token(self, context_tokens: float) -> float:
        """Forward FLOPs of one token at a mean causal context of ``context_tokens``."""
        # Scores q.k and the weighted sum of v: 2 x 2 x width FLOPs per attended position.
        attention = 4 * self.num_layers * self.attention_width * context_tokens
        return 2 * self.linear_parameters + attention


def model_shape(model_path: str) -> ModelShape:
    """The shape of the causal LM at ``model_path``, built on the meta device (no weights)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    linear = sum(module.weight.numel() for module in model.modules()
                 if isinstance(module, torch.nn.Linear))
    if config.tie_word_embeddings and not any(
            isinstance(module, torch.nn.Linear) and module.weight.shape[0] == config.vocab_size
            for module in model.modules()):
        linear += config.vocab_size * config.hidden_size
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return ModelShape(linear, config.num_hidden_layers, config.num_attention_heads * head_dim)


def step_flops_per_token(shape: ModelShape, mean_sequence_tokens: float, objective: str,
                         reference: str) -> float:
    """Model FLOPs per training token (a token of the policy's sequences) of one step.

    The policy's forward and backward (3 forward passes' worth), the reference's forward
    unless its log-probs were precomputed, and for KTO the mismatched pairs that define its
    reference point: a policy forward without gradient and a reference forward, of about
    the same number of tokens.
    """
    forward = shape.forward_flops_per_token(mean_sequence_tokens / 2)  # mean causal context
    passes = 3.0 + (1.0 if reference == "live" else 0.0)
    if objective == "kto":
        passes += 1.0 + (1.0 if reference == "live" else 0.0)
    return passes * forward


def mean_sequence_tokens(objective: str, model_path: str, max_length: int) -> float:
    """The mean length of the policy's sequences in the benchmark data, in tokens."""
    from bench.compare.settings import conversational_rows
    from platform.data.tokenize import encode_texts, load_tokenizer, render

    tokenizer = load_tokenizer(model_path)
    texts = []
    for row in conversational_rows(objective):
        prompt = row["prompt"][0]["content"]
        for name in ("completion", "chosen", "rejected"):
            if name in row:
                texts.append("".join(render(tokenizer, prompt, row[name][0]["content"])))
    return statistics.fmean(min(len(ids), max_length) for ids in encode_texts(tokenizer, texts))


def utilisation(tokens_per_s: float, flops_per_token: float, peak_flops_per_s: float) -> float:
    """Model-FLOPs utilisation: achieved model FLOP/s over the measured peak."""
    return tokens_per_s * flops_per_token / peak_flops_per_s
