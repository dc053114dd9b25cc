"""Loading causal language models for training and scoring."""

from __future__ import annotations

import importlib.util
import logging

import torch

logger = logging.getLogger(__name__)


def attention_implementation(requested: str, on_gpu: bool, bf16: bool) -> str:
    """The attention kernel: FlashAttention-2 on GPUs in bf16 when the ``flash_attn``
    package is installed, else PyTorch's scaled-dot-product attention (``auto``)."""
    flash_installed = importlib.util.find_spec("flash_attn") is not None
    if requested == "flash_attention_2":
        if not (on_gpu and flash_installed):
            raise ValueError(
                "model.attn_implementation=flash_attention_2 needs a CUDA GPU and the "
                f"flash-attn package (GPU: {on_gpu}, flash-attn installed: {flash_installed}). "
                "Use auto, sdpa or eager, or install flash-attn on the GPU nodes."
            )
        return requested
    if requested != "auto":
        return requested
    return "flash_attention_2" if on_gpu and bf16 and flash_installed else "sdpa"


def load_causal_lm(path: str, trust_remote_code: bool,
                   attn_implementation: str = "sdpa") -> torch.nn.Module:
    """A model from a folder or hub id, in fp32 (DeepSpeed casts it to bf16 where used)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32, trust_remote_code=trust_remote_code,
        attn_implementation=attn_implementation,
    )
