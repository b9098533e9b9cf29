# Two commands do everything on a fresh machine: `make demo` and `make test`.
# The set-up is idempotent: it (re)installs only when pyproject.toml or this Makefile changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.r4d-installed
# torch with a torchvision that imports beside it (transformers' video processors need one);
# on x86_64 pip takes both from this machine's disk (a CUDA build that also runs on a CPU).
TORCH ?= torch==2.14.1 torchvision==0.29.1
DEMO_OUT ?= runs/demo

.PHONY: setup demo test lint format clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/r4d demo --out $(DEMO_OUT)

lint: setup
	$(BIN)/ruff check src tests benchmarks lmms_eval_tasks
	$(BIN)/ruff format --check src tests benchmarks lmms_eval_tasks

test: lint
	$(BIN)/pytest -q

format: setup
	$(BIN)/ruff check --fix src tests benchmarks lmms_eval_tasks
	$(BIN)/ruff format src tests benchmarks lmms_eval_tasks

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
