"""The code base's own rules: lint clean (undefined names first), every known shortcoming
tied to an issue, no file past the size a reviewer can hold, objectives free of Ray,
DeepSpeed, vLLM and MLflow."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("platform", "objectives", "plugins", "bench", "tests", "deploy")
MAX_LINES = 600


def _python_files() -> list[Path]:
    return sorted(path for folder in SOURCE_DIRS for path in (REPO / folder).rglob("*.py")
                  if "__pycache__" not in path.parts)


def test_ruff_finds_nothing():
    done = subprocess.run([sys.executable, "-m", "ruff", "check", *SOURCE_DIRS], cwd=REPO,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_todo_names_its_issue():
    # The words are spelled as classes so that this line is no unmarked shortcoming itself.
    marker = re.compile(r"\b(T[O]DO|F[I]XME|X[X]X)\b(?!\(#\d+\))")
    bare = [f"{path.relative_to(REPO)}:{number}: {line.strip()}"
            for path in _python_files()
            for number, line in enumerate(path.read_text().splitlines(), start=1)
            if marker.search(line)]
    assert bare == [], "tie each to an issue, as TODO(#12): consequence\n" + "\n".join(bare)


def test_no_module_is_longer_than_the_limit():
    long = {str(path.relative_to(REPO)): count for path in _python_files()
            if (count := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"split these modules (over {MAX_LINES} lines): {long}"


def test_objectives_import_no_distributed_or_tracking_library():
    forbidden = {"ray", "deepspeed", "vllm", "mlflow"}
    found = []
    for path in sorted((REPO / "objectives").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.name}: {name}" for name in names
                      if name.split(".")[0] in forbidden]
    assert found == []
