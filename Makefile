# Two commands do everything on a fresh machine: `make demo` and `make test`.
# The set-up is idempotent: it (re)installs only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.r4d-installed
DEMO_OUT ?= runs/demo

.PHONY: setup demo test lint format clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
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
