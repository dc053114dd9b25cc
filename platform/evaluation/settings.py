"""The evaluation configuration and its command-line words.

``python -m platform.evaluate model=... benchmarks=mt_bench,arena_hard judge=hosted
judge.model_path=...``: every word is ``dotted.key=value`` (values read as YAML, except
for text fields, which keep the typed text so a run id such as ``12e4...`` stays text);
``judge=hosted`` / ``judge=external`` is short for ``judge.kind=...``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

BENCHMARKS = ("pairwise", "mt_bench", "alpaca_eval", "arena_hard")
DATA_DIR_ENV_VAR = "BCO_EVAL_DATA_DIR"
DEFAULT_EXPERIMENT = "bco-platform-eval"
_REPO_ROOT = Path(__file__).resolve().parents[2]


class EvalSettingsError(ValueError):
    """An evaluation configuration that cannot be used; the message lists every problem."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GenerationSettings(Section):
    backend: Literal["vllm", "transformers"] = Field(
        "vllm", description="vllm (a Ray actor in .venv-eval) or transformers (in process, "
                            "for models vLLM cannot load).")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description=(
        "Sampling temperature of pairwise and AlpacaEval answers (paper: 0.7); MT-Bench "
        "uses its per-category temperatures and Arena-Hard 0."))
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus mass (paper: 0.95).")
    max_tokens: int | None = Field(None, ge=1, description=(
        "Cap on every answer's length in tokens; default: each benchmark's own (MT-Bench "
        "1024, Arena-Hard 4096, pairwise and AlpacaEval 2048)."))
    seed: int = Field(0, description="Seed of sampling (each question adds a hash of its id).")
    max_model_len: int | None = Field(None, gt=16, description=(
        "Context length; default: the model's. Longer prompts are cut from the left."))
    dtype: str = Field("auto", description="vLLM dtype (auto, float32, bfloat16).")
    trust_remote_code: bool = Field(False, description="Allow model code from the hub.")
    num_cpus: float = Field(1.0, gt=0.0, description="CPUs the vLLM actor reserves in Ray.")
    kv_cache_gib: int = Field(1, ge=1, description="vLLM CPU KV-cache size, GiB.")
    threads: int | None = Field(None, ge=1, description=(
        "OpenMP threads of vLLM on CPU, unbound from cores; default: vLLM's binding."))
    load_timeout_s: float = Field(900.0, gt=0.0, description="Most seconds to load vLLM.")


class JudgeSettings(Section):
    kind: Literal["external", "hosted"] = Field("external", description=(
        "external: any OpenAI-compatible endpoint (base_url, model); hosted: vLLM serves "
        "model_path on 127.0.0.1 for the evaluation."))
    base_url: str | None = Field(None, description="external: endpoint root with /v1.")
    model: str | None = Field(None, description=(
        "external: the model name to request; hosted: the served name (default: the "
        "folder name of model_path)."))
    api_key_env: str | None = Field(None, description="Env var holding the API key.")
    api_key_file: Path | None = Field(None, description="File holding the API key.")
    model_path: str | None = Field(None, description=(
        "hosted: the judge model (a folder, an MLflow run id or a builtin: name)."))
    max_tokens: int | None = Field(None, ge=1, description=(
        "Cap on the judge's reply length; default: each benchmark's (2048, Arena-Hard "
        "4096). A hosted judge is also capped below its context length."))
    max_concurrency: int = Field(8, ge=1, le=512, description="Requests in flight.")
    max_retries: int = Field(5, ge=0, le=50, description="Retries per request.")
    timeout_s: float = Field(300.0, gt=0.0, description="Socket timeout per request.")
    cache_path: Path | None = Field(None, description=(
        "JSONL cache of judgments (a re-run sends nothing twice); default: one file per "
        "judge under the platform cache."))
    startup_timeout_s: float = Field(900.0, gt=0.0, description="hosted: most seconds "
                                                                "until the server answers.")
    max_model_len: int | None = Field(None, gt=16, description="hosted: context length.")
    dtype: str = Field("auto", description="hosted: vLLM dtype.")
    num_cpus: float = Field(1.0, gt=0.0, description="hosted: CPUs the server reserves.")
    kv_cache_gib: int = Field(1, ge=1, description="hosted: vLLM CPU KV-cache, GiB.")

    @model_validator(mode="after")
    def _complete(self) -> JudgeSettings:
        if self.api_key_env is not None and self.api_key_file is not None:
            raise ValueError("set one of judge.api_key_env and judge.api_key_file, not both.")
        if self.kind == "external":
            missing = [k for k in ("base_url", "model") if getattr(self, k) is None]
            if missing or self.model_path is not None:
                raise ValueError(
                    f"judge.kind=external needs judge.base_url and judge.model (missing: "
                    f"{missing}) and takes no judge.model_path (got {self.model_path!r}); "
                    "for a judge served by the platform set judge=hosted judge.model_path=.")
        elif self.model_path is None or self.base_url is not None:
            raise ValueError(
                f"judge.kind=hosted needs judge.model_path (got {self.model_path!r}) and "
                f"no judge.base_url (got {self.base_url!r}); for an existing endpoint set "
                "judge=external judge.base_url=... judge.model=...")
        return self


class PairwiseSettings(Section):
    data: list[str] = Field(default_factory=lambda: ["builtin:arithmetic"], min_length=1,
                            description=(
        "Feedback data whose test split holds the reference completions (same forms as "
        "data.train; a builtin data set gives its test split)."))
    test_fraction: float = Field(0.0, ge=0.0, lt=1.0, description=(
        "0: the files are the test split; >0: hold out this share of prompts by the seeded "
        "hash of training (set it and split_seed as the training run did)."))
    split_seed: int = Field(0, description="Seed of the test-split hash (data.split_seed).")
    format: Literal["auto", "binary", "paired", "scored"] = Field(
        "auto", description="Row format of the data (as data.format).")


class MtBenchSettings(Section):
    reference_model: str = Field("gpt-4", description=(
        "Reference answers for math, reasoning and coding: mt_bench/reference_answer/"
        "<name>.jsonl (FastChat names it after the judge; gpt-4 is the official set)."))


class AlpacaEvalSettings(Section):
    seed: int = Field(0, description="Annotator seed of the per-instruction swap.")
    compare_with: list[str] = Field(default_factory=list, description=(
        "Published models (rows of the shipped GLM weights) to report the length-"
        "controlled head-to-head win rate against."))


class ArenaHardSettings(Section):
    n_bootstrap: int = Field(100, ge=1, description="Bootstrap resamples of the CI.")
    seed: int = Field(0, description="Seed of the bootstrap.")


class TrackingSettings(Section):
    uri: str | None = Field(None, description=(
        "MLflow tracking URI (default: MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db)."))
    experiment: str = Field(DEFAULT_EXPERIMENT, min_length=1, description=(
        "Experiment of a new run, when the model belongs to no run (or new_run=true)."))
    new_run: bool = Field(False, description=(
        "Log into a new run even when the model belongs to one (tagged with its id)."))


BenchmarkName = Literal["pairwise", "mt_bench", "alpaca_eval", "arena_hard"]


class BenchmarkSettings(Section):
    """What is evaluated and how: the keys shared by ``platform.evaluate`` and the ``eval``
    stage of ``platform.run``, which differ only in the model and where results go."""

    benchmarks: list[BenchmarkName] = Field(
        default_factory=lambda: list(BENCHMARKS), min_length=1,
        description=f"Comma-separated subset of {', '.join(BENCHMARKS)} (or all).")
    data_dir: Path = Field(default_factory=lambda: default_data_dir(), description=(
        f"Benchmark files (SCORING_SPECS.md); default: ${DATA_DIR_ENV_VAR}, else "
        "../shared/data beside the repository."))
    limit: int | None = Field(None, ge=1, description="Only the first N questions of each.")
    eval_python: str | None = Field(None, description=(
        "Interpreter of the vLLM environment (default: <repo>/.venv-eval/bin/python)."))
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    judge: JudgeSettings = Field(description=(
        "The judge: judge=hosted judge.model_path=<model> (vLLM serves it here), or "
        "judge.base_url=<url/v1> judge.model=<name> [judge.api_key_env=VAR]."))
    pairwise: PairwiseSettings = Field(default_factory=PairwiseSettings)
    mt_bench: MtBenchSettings = Field(default_factory=MtBenchSettings)
    alpaca_eval: AlpacaEvalSettings = Field(default_factory=AlpacaEvalSettings)
    arena_hard: ArenaHardSettings = Field(default_factory=ArenaHardSettings)

    @field_validator("benchmarks", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            names = [name.strip() for name in value.split(",") if name.strip()]
            return list(BENCHMARKS) if names == ["all"] else names
        return value

    @field_validator("benchmarks")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @field_validator("data_dir")
    @classmethod
    def _exists(cls, value: Path) -> Path:
        return checked_data_dir(value)


class EvalConfig(BenchmarkSettings):
    model: str = Field(description=(
        "The model to evaluate: a Hugging Face folder, an MLflow run id (its model), or a "
        "builtin: name."))
    ray_address: str | None = Field(None, description="Ray cluster (default: a local one).")
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)


class EvalStageSettings(BenchmarkSettings):
    """The ``eval`` section of ``platform.run``: benchmarks run on the trained policy after
    training, logged to the training run. No benchmarks (the default): no evaluation."""

    benchmarks: list[BenchmarkName] = Field(default_factory=list, description=(
        f"Benchmarks to run after training: a comma-separated subset of "
        f"{', '.join(BENCHMARKS)} (or all); empty: no evaluation."))
    judge: JudgeSettings | None = Field(None, description=(
        "The judge, needed with benchmarks: judge=hosted judge.model_path=<model>, or "
        "judge.base_url=<url/v1> judge.model=<name> [judge.api_key_env=VAR]."))

    @model_validator(mode="after")
    def _complete(self) -> EvalStageSettings:
        if not self.benchmarks:
            ignored = sorted(f"eval.{name}" for name in self.model_fields_set - {"benchmarks"})
            if ignored:
                raise ValueError(
                    f"{ignored} are set but eval.benchmarks is empty, so nothing would be "
                    "evaluated; add eval.benchmarks=<names or all> or drop those keys.")
            return self
        if self.judge is None:
            raise ValueError(
                f"eval.benchmarks={','.join(self.benchmarks)} needs a judge: add "
                "eval.judge=hosted eval.judge.model_path=<model>, or eval.judge.base_url="
                "<url/v1> eval.judge.model=<name> [eval.judge.api_key_env=VAR].")
        checked_data_dir(self.data_dir, "eval.data_dir")  # the default too, before training
        return self


def default_data_dir() -> Path:
    configured = os.environ.get(DATA_DIR_ENV_VAR)
    return Path(configured) if configured else _REPO_ROOT.parent / "shared" / "data"


def checked_data_dir(value: Path, key: str = "data_dir") -> Path:
    if not value.is_dir():
        raise ValueError(f"{key} {str(value)!r} is not a directory; give the folder "
                         "holding judge_prompts/, mt_bench/, alpaca_eval/ and "
                         f"arena_hard/ ({key}= or ${DATA_DIR_ENV_VAR}).")
    return value.resolve()


# Command-line words ---------------------------------------------------------------------

_KIND_SHORTHAND = {"judge": "judge.kind"}


def parse_words(words: list[str]) -> dict[str, Any]:
    """``dotted.key=value`` words to a nested dict; raises with the word that is wrong."""
    tree: dict[str, Any] = {}
    for word in words:
        key, sep, raw = word.partition("=")
        key = _KIND_SHORTHAND.get(key, key)
        parts = key.split(".")
        if not sep or not all(parts):
            raise EvalSettingsError(
                f"cannot read {word!r}: give dotted.key=value words, for example "
                "model=outputs/run/model benchmarks=mt_bench,arena_hard limit=3.")
        node = tree
        for depth, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise EvalSettingsError(f"cannot set {key!r}: {'.'.join(parts[:depth + 1])!r}"
                                        " already has a value; give the value or the keys.")
        node[parts[-1]] = raw if _is_text(parts) else _yaml_value(raw)
    return tree


def _yaml_value(raw: str) -> Any:
    try:
        return yaml.safe_load(raw) if raw else None
    except yaml.YAMLError:
        return raw


def _is_text(parts: list[str]) -> bool:
    """Whether the field at ``parts`` holds text (a str or a path), kept as typed."""
    model: type[BaseModel] | None = EvalConfig
    annotation: Any = None
    for part in parts:
        field = model.model_fields.get(part) if model else None
        if field is None:
            return False
        annotation = field.annotation
        model = annotation if isinstance(annotation, type) and issubclass(
            annotation, BaseModel) else None
    if get_origin(annotation) is list:
        return False  # a list is YAML: [a, b]
    options = set(get_args(annotation)) or {annotation}
    return bool(options & {str, Path})


def load_settings(words: list[str]) -> EvalConfig:
    """The validated configuration of a command line."""
    try:
        return EvalConfig.model_validate(parse_words(words))
    except ValidationError as error:
        raise EvalSettingsError(describe_errors(error)) from None


def describe_errors(error: ValidationError) -> str:
    lines = [f"invalid evaluation configuration ({error.error_count()} problem(s)):"]
    for item in error.errors():
        path = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            accepted = sorted(_section(item["loc"][:-1]).model_fields)
            lines.append(f"  - unknown key {path!r} (value {item['input']!r}); accepted "
                         f"here: {accepted}")
        elif item["type"] == "missing":
            lines.append(f"  - {path} is required: {_description(item['loc'])}")
        else:
            shown = "" if isinstance(item.get("input"), dict) else f" = {item.get('input')!r}"
            lines.append(f"  - {path}{shown}: {message}")
    lines.append("`python -m platform.evaluate --help` lists every key.")
    return "\n".join(lines)


def _section(loc: tuple) -> type[BaseModel]:
    model: type[BaseModel] = EvalConfig
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type)
                                 and issubclass(field.annotation, BaseModel)):
            break
        model = field.annotation
    return model


def _description(loc: tuple) -> str:
    field = _section(loc[:-1]).model_fields.get(str(loc[-1]))
    return (field.description or "") if field else ""


def help_text() -> str:
    """Every key with its default and description."""
    lines = []
    for name, field in EvalConfig.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            for key, sub in annotation.model_fields.items():
                default = "(required)" if sub.is_required() else repr(sub.get_default(
                    call_default_factory=True))
                lines.append(f"  {name}.{key}={default}  {sub.description or ''}")
        else:
            default = "(required)" if field.is_required() else repr(
                field.get_default(call_default_factory=True))
            lines.append(f"  {name}={default}  {field.description or ''}")
    return "\n".join(lines)
