# affectcache developer entry points. Every target builds .venv first (CPU torch via the constraints
# file, so pip never pulls CUDA wheels).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONSTRAINTS := .ci/constraints-cpu.txt
DEPS_STAMP := $(VENV)/.deps-installed
MODULES := $(sort $(shell find extractors store trainers cli -name "*.py" -not -path "*/__pycache__/*"))
DEMO_OUT ?= demo_out

.PHONY: venv demo test lint typecheck unit bench clean FORCE

venv: $(VENV)/.modules

$(DEPS_STAMP): pyproject.toml $(CONSTRAINTS)
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) torch==2.13.0
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) -e ".[test,dev,demo]" --config-settings editable_mode=strict
	# openai-whisper without triton (~1 GB, GPU-only kernels); its pure-Python needs are listed by hand.
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) --no-deps openai-whisper==20250625
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) tiktoken more-itertools numba
	touch $@

# Strict editable installs (what mypy can follow) only see modules present at install time:
# relink whenever the set of package modules changes.
$(VENV)/.modules: $(DEPS_STAMP) FORCE
	@echo "$(MODULES)" | cmp -s - $@ 2>/dev/null || { \
	  $(BIN)/python -m pip install -q --no-deps -e . --config-settings editable_mode=strict && \
	  echo "$(MODULES)" > $@; }

# The whole chain (corpus, every modality, LaScA, training) is one command: store/pipelines/demo.py.
demo: venv
	$(BIN)/affectcache demo --out $(DEMO_OUT)

lint: venv
	$(BIN)/ruff check .

typecheck: venv
	$(BIN)/mypy -p affectcache.extractors -p affectcache.store -p affectcache.trainers -p affectcache.cli

unit: venv
	$(BIN)/python -m pytest -q

test: lint typecheck unit

bench: venv
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) build *.egg-info $(DEMO_OUT) bench_out .mypy_cache .ruff_cache .pytest_cache
