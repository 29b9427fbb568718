PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed.stamp

.PHONY: venv test lint system-deps up bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "error: streamex needs Python 3.11+, but $(PY) is Python " + sys.version.split()[0] + "; run: make PY=python3.11 ...")'
	[ -x $(BIN)/python ] || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

system-deps:
	scripts/install-system-deps chromium

test: lint system-deps
	$(BIN)/pytest -q

up: venv
	$(BIN)/streamex up

bench: venv
	$(BIN)/pytest benchmarks/ --benchmark-only

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .benchmarks .hypothesis
