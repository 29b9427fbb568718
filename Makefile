PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# One stamp per set of dependencies: `make up` installs only what the exchange
# needs; `make test` adds the dev extra (tests, linters, benchmarks' dependencies).
RUN_STAMP := $(VENV)/.run.stamp
DEV_STAMP := $(VENV)/.dev.stamp

.PHONY: venv dev test lint system-deps up bench clean

venv: $(RUN_STAMP)

dev: $(DEV_STAMP)

$(BIN)/python:
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "error: streamex needs Python 3.11+, but $(PY) is Python " + sys.version.split()[0] + "; run: make PY=python3.11 ...")'
	$(PY) -m venv $(VENV)

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUN_STAMP)

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(DEV_STAMP) $(RUN_STAMP)

lint: dev
	$(BIN)/ruff check .
	$(BIN)/mypy

system-deps:
	scripts/install-system-deps chromium

test: lint system-deps
	$(BIN)/pytest -q

up: venv
	$(BIN)/streamex up --demo

bench: dev
	$(BIN)/pytest benchmarks/ --benchmark-only

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .benchmarks .hypothesis
