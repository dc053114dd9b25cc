"""Objectives found through the entry-point group ``bco_platform.objectives``.

The built-in objectives register in this project's ``pyproject.toml`` exactly as a
third-party plug-in registers in its own: the registry knows no names of its own.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from pydantic import ValidationError

from objectives.base import Objective, ObjectiveConfig

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "bco_platform.objectives"


@dataclass(frozen=True)
class ObjectiveEntry:
    """One registered objective and the distribution that ships it."""

    name: str
    target: str  # "module:Class"
    distribution: str
    version: str

    def describe(self) -> str:
        return f"{self.name} = {self.target} (from {self.distribution} {self.version})"


@functools.cache
def discover() -> dict[str, ObjectiveEntry]:
    """All registered objectives by name; refuses a name claimed by two distributions."""
    found: dict[str, ObjectiveEntry] = {}
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = entry_point.dist
        entry = ObjectiveEntry(
            name=entry_point.name,
            target=entry_point.value,
            distribution=dist.metadata["Name"] if dist is not None else "<unknown>",
            version=dist.version if dist is not None else "?",
        )
        previous = found.get(entry.name)
        if previous is None or _same_registration(previous, entry):
            # The same distribution can be seen twice (a source tree's egg-info on sys.path
            # beside the installed metadata): that is one registration, not a conflict.
            found[entry.name] = entry
            continue
        raise ValueError(
            f"objective name {entry.name!r} is registered twice: {previous.describe()} and "
            f"{entry.describe()}. Uninstall one of the distributions "
            f"(pip uninstall {entry.distribution}) or rename its entry point in the "
            f"{ENTRY_POINT_GROUP!r} group."
        )
    return found


def _same_registration(a: ObjectiveEntry, b: ObjectiveEntry) -> bool:
    return (a.distribution, a.target) == (b.distribution, b.target)


def known_names() -> list[str]:
    return sorted(discover())


def entry_for(name: str) -> ObjectiveEntry:
    entries = discover()
    if name not in entries:
        raise ValueError(
            f"objective {name!r} is not registered (known: {sorted(entries)}). Fix the name, "
            f"or install the plug-in that provides it (pip install <path or name>); "
            f"`python -m platform.run --list-objectives` shows what is installed."
        )
    return entries[name]


@functools.cache
def load_class(name: str) -> type[Objective]:
    """Import the class registered as ``name``."""
    entry = entry_for(name)
    try:
        cls = metadata.EntryPoint(entry.name, entry.target, ENTRY_POINT_GROUP).load()
    except Exception as exc:  # any import-time failure of third-party code
        raise ImportError(
            f"objective {name!r} could not be imported from {entry.target} "
            f"(distribution {entry.distribution} {entry.version}): "
            f"{type(exc).__name__}: {exc}. Reinstall or fix that distribution."
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, Objective)):
        raise TypeError(
            f"entry point {entry.describe()} does not name a subclass of "
            f"objectives.base.Objective (got {cls!r}). Point it at the objective class."
        )
    return cls


def build_config(name: str, options: dict[str, Any]) -> ObjectiveConfig:
    """Validate ``options`` against the options model of objective ``name``."""
    return load_class(name).config_cls.model_validate(options)


def build(name: str, config: ObjectiveConfig) -> Objective:
    return load_class(name)(config)


def validation_problems(name: str, options: dict[str, Any]) -> list[tuple[tuple, str, Any]]:
    """(location, message, value) for each problem of ``options``; empty when valid."""
    try:
        build_config(name, options)
    except ValidationError as exc:
        return [(tuple(err["loc"]), err["msg"], err.get("input")) for err in exc.errors()]
    return []
