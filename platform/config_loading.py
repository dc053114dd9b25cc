"""From command-line words to a validated :class:`RunConfig`.

Precedence, lowest first: the defaults of the pydantic models, the recipe (a YAML file:
``recipe=tiny`` names ``platform/recipes/tiny.yaml``, ``recipe=path/to/file.yaml`` any
file), then ``dotted.key=value`` overrides. Values are parsed as YAML scalars or lists, so
``train.lr=1e-6`` is a float and ``data.train=[a.jsonl,b.jsonl]`` a list.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from platform.config import RunConfig
from platform.evaluation.settings import EvalSettingsError, parse_words

RECIPE_DIR = Path(__file__).parent / "recipes"
DEFAULT_RECIPE = "default"
EVAL_PREFIX = "eval."


class ConfigError(ValueError):
    """A run configuration that cannot be used; the message lists every problem."""


def available_recipes() -> list[str]:
    return sorted(path.stem for path in RECIPE_DIR.glob("*.yaml"))


def load_recipe(name: str) -> dict[str, Any]:
    path = Path(name) if name.endswith((".yaml", ".yml")) else RECIPE_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"recipe {name!r} not found (looked for {path}). Built-in recipes: "
            f"{available_recipes()}; or give the path of a YAML file ending in .yaml."
        )
    try:
        content = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"recipe {path} is not valid YAML: {exc}") from exc
    if not isinstance(content, dict):
        raise ConfigError(
            f"recipe {path} must hold a mapping of sections (model:, data:, train:, ...), "
            f"got a {type(content).__name__}."
        )
    return content


def parse_overrides(words: list[str]) -> tuple[str, dict[str, Any]]:
    """Split ``key=value`` words into the recipe name and a nested override dict."""
    recipe = DEFAULT_RECIPE
    overrides: dict[str, Any] = {}
    eval_words = []
    for word in words:
        key, sep, raw = word.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(
                f"cannot read {word!r}: overrides are dotted.key=value words, for example "
                "objective=bco, train.lr=1e-6 or recipe=tiny."
            )
        if key == "recipe":
            recipe = raw
        elif key.startswith(EVAL_PREFIX):
            eval_words.append(word.removeprefix(EVAL_PREFIX))
        else:
            _set_dotted(overrides, key, _parse_value(raw))
    if eval_words:
        _set_eval_section(overrides, eval_words)
    return recipe, overrides


def _set_eval_section(overrides: dict[str, Any], eval_words: list[str]) -> None:
    """``eval.*`` words are read as ``platform.evaluate`` reads its own: ``eval.judge=hosted``
    is short for ``eval.judge.kind=hosted`` and text fields keep the typed text."""
    if "eval" in overrides:
        raise ConfigError(
            f"cannot set eval.* keys: 'eval' was already given the value "
            f"{overrides['eval']!r}. Give the keys only (eval.benchmarks=..., eval.judge=...)."
        )
    try:
        overrides["eval"] = parse_words(eval_words)
    except EvalSettingsError as exc:
        raise ConfigError(f"in the eval.* keys: {exc}") from None


_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _parse_value(raw: str) -> Any:
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        return raw  # not YAML: keep the text as it was typed
    # YAML 1.1 reads 1e-6 (no dot) as a string; a user typing it means a number.
    if isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value):
        return float(value)
    return value


def _set_dotted(target: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = target
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            prefix = ".".join(parts[: depth + 1])
            raise ConfigError(
                f"cannot set {key!r}: {prefix!r} was already given the value {child!r}, so "
                "it cannot also hold keys. Give either the value or the keys."
            )
        node = child
    node[parts[-1]] = value


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Deep merge: mappings merge key by key, everything else is replaced."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_config(words: list[str]) -> RunConfig:
    """The validated config of a command line such as ``objective=bco recipe=tiny``."""
    recipe, overrides = parse_overrides(words)
    raw = merge(load_recipe(recipe), overrides)
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None


def format_validation_error(exc: ValidationError) -> str:
    lines = [f"invalid run configuration ({exc.error_count()} problem(s)):"]
    for err in exc.errors():
        lines.append(f"  - {_describe(err)}")
    lines.append("Fix the recipe or the key=value override; `--help` lists every key.")
    return "\n".join(lines)


def _describe(err: dict[str, Any]) -> str:
    path = ".".join(str(part) for part in err["loc"])
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        section = ".".join(str(part) for part in err["loc"][:-1])
        accepted = _accepted_keys(err["loc"][:-1])
        where = f"in {section!r}" if section else "at the top level"
        return f"unknown key {path!r} (value {err['input']!r}); keys accepted {where}: {accepted}"
    if not path:
        return message
    hint = _field_description(err["loc"])
    value = err.get("input")
    shown = "" if isinstance(value, dict) else f" = {value!r}"
    return f"{path}{shown}: {message}" + (f" ({hint})" if hint else "")


def _model_at(loc: tuple) -> type[BaseModel] | None:
    model: type[BaseModel] | None = RunConfig
    for part in loc:
        field = model.model_fields.get(str(part)) if model else None
        model = _section_model(field.annotation) if field else None
    return model


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The model of a section field, also of an optional one (``JudgeSettings | None``)."""
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _accepted_keys(loc: tuple) -> list[str]:
    model = _model_at(loc)
    return sorted(model.model_fields) if model else []


def _field_description(loc: tuple) -> str:
    model = _model_at(loc[:-1])
    field = model.model_fields.get(str(loc[-1])) if model else None
    return field.description or "" if field else ""


def help_text() -> str:
    """Every key with its default and description, for ``--help``."""
    return "\n".join(_help_lines(RunConfig, ""))


def _help_lines(model: type[BaseModel], prefix: str) -> list[str]:
    lines = []
    for name, field in model.model_fields.items():
        section = _section_model(field.annotation)
        if section is not None:
            lines.extend(_help_lines(section, f"{prefix}{name}."))
        else:
            default = field.get_default(call_default_factory=True)
            lines.append(f"  {prefix}{name}={default!r}  {field.description or ''}")
    return lines
