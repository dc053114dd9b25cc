"""The typed run configuration. Recipes and ``dotted.key=value`` overrides fill it in
(``platform.config_loading``); every consumer receives these objects, never raw dicts."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from objectives.base import ObjectiveConfig
from platform import registry
from platform.evaluation.settings import EvalStageSettings


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(Section):
    name: str = Field(
        "builtin:smollm2-135m-instruct",
        description=(
            "Policy to train: a local directory, a Hugging Face hub id (online only), or a "
            "builtin name (builtin:tiny-llama, builtin:smollm2-135m-instruct)."
        ),
    )
    reference: str | None = Field(
        None, description="Reference model, same forms as name; default: the policy itself."
    )
    reference_logps: Literal["live", "precomputed"] = Field(
        "live",
        description=(
            "live: the reference model scores every micro-batch on the workers; precomputed: "
            "a Ray Data batch-inference pass scores the stream once before training and "
            "caches the log-probs on disk (keyed by data fingerprint and reference model)."
        ),
    )
    reference_placement: Literal["auto", "device", "zero3"] = Field(
        "auto",
        description=(
            "Where the live reference's weights sit: a full copy on each worker's device, or "
            "partitioned over the workers by DeepSpeed ZeRO-3 (inference only). auto: zero3 "
            "when train.zero_stage is 3, else device."
        ),
    )
    reference_cache_dir: str | None = Field(
        None,
        description=(
            "Cache of precomputed reference log-probs (default: <BCO_PLATFORM_CACHE or "
            "~/.cache/bco-platform>/reference_logps). On a multi-node cluster use storage "
            "every node sees."
        ),
    )
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = Field(
        "auto",
        description=(
            "Attention kernel. auto: FlashAttention-2 on GPUs in bf16 when flash-attn is "
            "installed, else PyTorch's scaled-dot-product attention (sdpa)."
        ),
    )
    trust_remote_code: bool = Field(False, description="Allow model code from the hub.")
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass to save memory."
    )


class DataConfig(Section):
    train: list[str] = Field(
        default_factory=lambda: ["builtin:arithmetic"],
        min_length=1,
        description=(
            "Training data: JSONL, CSV or Parquet files or directories, a saved Hugging Face "
            "dataset directory, object-store URIs (s3://, gs://, ...), a hub dataset name "
            "(online only), or a builtin dataset (builtin:arithmetic)."
        ),
    )
    format: Literal["auto", "binary", "paired", "scored"] = Field(
        "auto",
        description=(
            "Row format: binary (prompt, completion, label), paired (prompt, chosen, "
            "rejected), scored (prompt, response, a numeric score), or auto (decided from "
            "the columns). Conversational (messages) and HH-RLHF variants are detected."
        ),
    )
    score_field: str = Field(
        "helpfulness", min_length=1,
        description="Column of the numeric score of scored rows (HelpSteer2: helpfulness).",
    )
    up_threshold: float = Field(
        4.0,
        description="A scored row is thumbs-up when its score is at least this (paper: 4).",
    )
    balance: Literal["oversample", "undersample", "weight", "none"] = Field(
        "oversample",
        description=(
            "Class balance of binary rows: oversample the minority class, undersample the "
            "majority, weight rows so both classes weigh the same, or none."
        ),
    )
    truncation: Literal["truncate", "drop"] = Field(
        "truncate",
        description=(
            "Rows over the length limits: truncate (prompt from the left, completion from "
            "the right) or drop (dropped and counted)."
        ),
    )
    test_fraction: float = Field(
        0.0, ge=0.0, lt=1.0,
        description="Share of prompts held out as a test split (by a seeded prompt hash).",
    )
    split_seed: int = Field(
        0, description="Seed of the prompt hash that assigns the test split."
    )
    max_length: int = Field(2048, gt=0, description="Longest prompt plus completion, tokens.")
    max_prompt_length: int = Field(1536, gt=0, description="Longest prompt, tokens (kept "
                                   "from the right: the end of the prompt is kept).")
    max_completion_length: int = Field(512, gt=0, description="Longest completion, tokens.")
    max_input_rows: int | None = Field(
        None, gt=0, description="Read only the first N input rows (quick experiments)."
    )
    on_bad_row: Literal["strict", "skip"] = Field(
        "strict",
        description="A malformed row stops the run (strict) or is skipped and counted (skip).",
    )

    @model_validator(mode="after")
    def _lengths_fit(self) -> DataConfig:
        if self.max_prompt_length >= self.max_length:
            raise ValueError(
                f"data.max_prompt_length ({self.max_prompt_length}) must be below "
                f"data.max_length ({self.max_length}) to leave room for the completion."
            )
        return self


class TrainConfig(Section):
    epochs: int = Field(1, ge=1, description="Passes over the balanced training data.")
    max_steps: int | None = Field(
        None, gt=0, description="Stop after this many optimizer steps (default: all epochs)."
    )
    micro_batch_size: int = Field(4, ge=1, description="Rows per worker per forward pass.")
    grad_accum_steps: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    seed: int = Field(42, description="Seed of data shuffling, sampling and initialisation.")
    lr: float = Field(5e-7, gt=0, description="Peak learning rate of AdamW (paper: 5e-7).")
    lr_schedule: Literal["linear", "constant"] = Field(
        "linear", description="Linear decay to 0 after warm-up, or constant after warm-up."
    )
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Share of steps warming up.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    adam_betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas.")
    adam_eps: float = Field(1e-8, gt=0, description="AdamW epsilon.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    zero_stage: int = Field(0, ge=0, le=3, description="DeepSpeed ZeRO stage (0-3).")
    layout: Literal["auto", "padded", "packed", "shared"] = Field(
        "auto",
        description=(
            "How a micro-batch's sequences are laid out for the forward pass: padded (one "
            "per row), packed (several per row, no padding), shared (packed, and sequences "
            "with the same prompt, such as a pair's chosen and rejected answers, share one "
            "copy of it). auto: the most compact one the model passes at start."
        ),
    )
    offload_optimizer: bool = Field(
        False, description="Keep the optimizer state in CPU memory (ZeRO stage 1-3)."
    )
    deepspeed_config: str | None = Field(
        None,
        description=(
            "A DeepSpeed JSON file merged over the generated config (its keys win); batch "
            "sizes and the schedule stay with train.* keys."
        ),
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 on GPUs that support it, fp32 elsewhere."
    )
    output_dir: str = Field("outputs", description="Where runs write checkpoints and models.")
    max_failures: int = Field(
        0, ge=-1, description="Worker-group failures to recover from the last checkpoint "
        "(-1: without limit)."
    )

    @model_validator(mode="after")
    def _offload_needs_zero(self) -> TrainConfig:
        if self.offload_optimizer and self.zero_stage == 0:
            raise ValueError(
                "train.offload_optimizer=true needs a ZeRO stage that partitions the "
                "optimizer state (train.zero_stage=1, 2 or 3); train.zero_stage is 0."
            )
        return self

    @field_validator("deepspeed_config")
    @classmethod
    def _readable_json(cls, path: str | None) -> str | None:
        if path is not None:
            from platform.train.ds_override import read_override

            read_override(path)  # raises with what is wrong in the file
        return path


class CheckpointConfig(Section):
    every_steps: int | None = Field(
        None, gt=0, description="Save a checkpoint every N optimizer steps (and at the end)."
    )
    keep: int = Field(2, ge=1, description="How many of the latest checkpoints to keep.")


class ResourcesConfig(Section):
    num_workers: int | None = Field(
        None, ge=1, description="Training workers (default: every GPU, else every CPU)."
    )
    use_gpu: bool | None = Field(None, description="Train on GPUs (default: if any exist).")
    cpus_per_worker: float | None = Field(
        None,
        gt=0,
        description=(
            "CPUs reserved per worker (default on CPU clusters: a fraction that leaves one "
            "CPU to the data stream, which otherwise starves)."
        ),
    )
    ray_address: str | None = Field(
        None,
        description=(
            "Ray cluster to join: host:port, ray://..., or auto for the one running on this "
            "machine (default: RAY_ADDRESS, else a new local cluster)."
        ),
    )


class TrackingConfig(Section):
    uri: str | None = Field(
        None,
        description=(
            "MLflow tracking URI (default: MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db)."
        ),
    )
    experiment: str = Field("bco-platform", min_length=1, description="MLflow experiment.")
    run_name: str | None = Field(None, description="MLflow run name (default: generated).")


class RunConfig(Section):
    objective: str = Field("bco", description="Registered objective to train with.")
    loss: dict[str, Any] = Field(
        default_factory=dict,
        description="Options of the objective (e.g. loss.beta=0.1), checked by its own model.",
    )
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    eval: EvalStageSettings = Field(
        default_factory=EvalStageSettings,
        # Left out of the training run's params: the evaluation logs its judge's resolved
        # identity under eval.judge.* (MLflow params cannot change afterwards) and its
        # whole configuration in eval/summary.json.
        exclude=True,
        description="Benchmarks run on the trained policy after training (docs/evaluation.md).",
    )
    resume_from: str | None = Field(
        None,
        description=(
            "Continue a run: a checkpoint directory, or an MLflow run id whose latest "
            "checkpoint is used (its metrics continue in the same MLflow run)."
        ),
    )

    @field_validator("objective")
    @classmethod
    def _registered(cls, name: str) -> str:
        registry.entry_for(name)  # raises with the known names
        return name

    @model_validator(mode="after")
    def _loss_options_valid(self) -> RunConfig:
        problems = registry.validation_problems(self.objective, self.loss)
        if problems:
            accepted = sorted(registry.load_class(self.objective).config_cls.model_fields)
            details = "; ".join(
                f"loss.{'.'.join(map(str, loc))} = {value!r}: {message}"
                for loc, message, value in problems
            )
            raise ValueError(
                f"options of objective {self.objective!r} are invalid: {details}. "
                f"Options accepted by {self.objective!r}: {accepted}."
            )
        return self

    def objective_config(self) -> ObjectiveConfig:
        return registry.build_config(self.objective, self.loss)


def flatten(config: BaseModel | dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys to leaf values, e.g. {"train.lr": 5e-07}."""
    items = config.model_dump() if isinstance(config, BaseModel) else config
    flat: dict[str, Any] = {}
    for key, value in items.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat
