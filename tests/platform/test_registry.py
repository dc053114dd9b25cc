"""Objectives are found through entry points, like third-party plug-ins."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from objectives.bco import BCOObjective
from platform import registry


@pytest.fixture
def fresh_registry():
    registry.discover.cache_clear()
    registry.load_class.cache_clear()
    yield registry
    registry.discover.cache_clear()
    registry.load_class.cache_clear()


def _install_fake_distribution(root: Path, name: str, entry_points: dict[str, str]) -> None:
    """A real (if minimal) installed distribution: a dist-info folder on sys.path."""
    info = root / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = [f"[{registry.ENTRY_POINT_GROUP}]"] + [f"{k} = {v}" for k, v in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


def test_builtins_register_through_entry_points(fresh_registry):
    entries = fresh_registry.discover()
    assert {"bco", "bce", "kto", "dpo", "ipo", "nca", "sft"} <= set(entries)
    assert entries["bco"].distribution == "bco-platform"
    assert fresh_registry.load_class("bco") is BCOObjective


def test_two_distributions_claiming_one_name_are_refused(fresh_registry, tmp_path, monkeypatch):
    _install_fake_distribution(tmp_path, "rival-objectives", {"bco": "rival_mod:Rival"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError) as info:
        fresh_registry.discover()
    message = str(info.value)
    assert "'bco' is registered twice" in message
    assert "bco-platform" in message and "rival-objectives" in message


def test_a_plugin_that_fails_to_import_names_its_distribution(
    fresh_registry, tmp_path, monkeypatch
):
    _install_fake_distribution(tmp_path, "broken-plugin", {"broken": "broken_mod:Broken"})
    (tmp_path / "broken_mod.py").write_text("raise RuntimeError('missing dependency foo')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImportError) as info:
        fresh_registry.load_class("broken")
    message = str(info.value)
    assert "broken-plugin 1.0" in message and "missing dependency foo" in message
    sys.modules.pop("broken_mod", None)


def test_an_entry_point_that_is_not_an_objective_is_refused(
    fresh_registry, tmp_path, monkeypatch
):
    _install_fake_distribution(tmp_path, "odd-plugin", {"odd": "odd_mod:thing"})
    (tmp_path / "odd_mod.py").write_text("thing = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TypeError, match="does not name a subclass"):
        fresh_registry.load_class("odd")
    sys.modules.pop("odd_mod", None)
