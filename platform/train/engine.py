"""DeepSpeed: the config generated from the run config, and the policy engine."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import torch

from platform.config import TrainConfig
from platform.train import ds_override

logger = logging.getLogger(__name__)


def use_bf16(train: TrainConfig, on_gpu: bool) -> bool:
    """bf16 where the hardware has it; fp32 on CPUs (bf16 emulation is ~16x slower there)."""
    if train.precision == "fp32":
        return False
    if train.precision == "bf16":
        return True
    return on_gpu and torch.cuda.is_bf16_supported()


def lr_factor(train: TrainConfig, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the peak learning rate for optimizer step ``s`` (0-based).

    Linear warm-up over ``warmup_ratio * total_steps`` steps that starts above zero (no
    step is wasted at lr 0), then linear decay towards 0 or constant.
    """
    warmup = round(train.warmup_ratio * total_steps)
    decay = max(total_steps - warmup, 1)
    linear = train.lr_schedule == "linear"

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(total_steps - step, 0) / decay if linear else 1.0

    return factor


def deepspeed_config(train: TrainConfig, on_gpu: bool) -> dict[str, Any]:
    """The DeepSpeed JSON config of a run (the schedule is :func:`lr_factor`), with the
    user's ``train.deepspeed_config`` file merged over it."""
    zero: dict[str, Any] = {"stage": train.zero_stage}
    if train.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": on_gpu}
    config = {
        "train_micro_batch_size_per_gpu": train.micro_batch_size,
        "gradient_accumulation_steps": train.grad_accum_steps,
        "gradient_clipping": train.max_grad_norm,
        "zero_optimization": zero,
        # The optimizer below is torch's AdamW, also when its state is offloaded.
        # TODO(#5): offloaded steps run torch's AdamW on the CPU, slower than DeepSpeed's
        # compiled CPU Adam on large models.
        "zero_force_ds_cpu_optimizer": False,
        "bf16": {"enabled": use_bf16(train, on_gpu)},
        "optimizer": {
            "type": "AdamW",
            "params": {
                "lr": train.lr,
                "betas": list(train.adam_betas),
                "eps": train.adam_eps,
                "weight_decay": train.weight_decay,
                # torch's AdamW: DeepSpeed's fused kernels need a compiled op per platform.
                "torch_adam": True,
            },
        },
        "steps_per_print": 10**9,  # progress is logged by the trainer, once per step
        "wall_clock_breakdown": False,
    }
    if train.deepspeed_config:
        config = ds_override.merge(config, ds_override.read_override(train.deepspeed_config))
    return config


def reference_config(policy_config: dict[str, Any]) -> dict[str, Any]:
    """DeepSpeed config of a frozen reference partitioned by ZeRO-3 (no optimizer)."""
    return {
        "train_micro_batch_size_per_gpu": policy_config["train_micro_batch_size_per_gpu"],
        "gradient_accumulation_steps": policy_config["gradient_accumulation_steps"],
        "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
        "bf16": dict(policy_config["bf16"]),
        "steps_per_print": 10**9,
    }


def initialize_reference(model: torch.nn.Module, policy_config: dict[str, Any]):
    """The reference wrapped by DeepSpeed ZeRO-3 for inference: each worker holds a
    1/world_size share of its weights and gathers a layer's weights as it runs it. Every
    worker must run each forward pass together."""
    import deepspeed

    engine, *_ = deepspeed.initialize(model=model, config=reference_config(policy_config),
                                      dist_init_required=False)
    engine.eval()
    return engine


def prepare_accelerator(on_gpu: bool) -> None:
    """Select DeepSpeed's accelerator before its first import in this process."""
    if not on_gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")


def initialize_policy(
    model: torch.nn.Module, config: dict[str, Any], schedule: Callable[[int], float]
):
    """The policy wrapped by DeepSpeed; returns (engine, lr scheduler)."""
    import deepspeed

    engine, _, _, scheduler = deepspeed.initialize(
        model=model,
        model_parameters=[p for p in model.parameters() if p.requires_grad],
        config=config,
        lr_scheduler=lambda optimizer: torch.optim.lr_scheduler.LambdaLR(optimizer, schedule),
        dist_init_required=False,  # Ray Train already formed the process group
    )
    return engine, scheduler


def gathered_state_dict(engine, zero_stage: int) -> dict[str, torch.Tensor]:
    """The full policy weights, named as in its Hugging Face model; under ZeRO-3 every
    worker must call this together."""
    module = engine.module.causal_lm  # the engine wraps a scoring.TokenScorer
    if zero_stage < 3:
        return {k: v.detach().cpu() for k, v in module.state_dict().items()}
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
        return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
