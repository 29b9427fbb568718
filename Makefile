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
	scripts/install-system-deps chromium postgresql

# The order-entry tests once more on the v1 pipeline ([risk] enabled = false).
RISK_OFF_TESTS := tests/test_gateway_flow.py tests/test_gateway_errors.py \
	tests/test_gateway_client.py tests/test_gateway_faults.py \
	tests/test_gateway_backpressure.py tests/test_fuzz_requests.py tests/test_demo.py \
	tests/test_gateway_order_types.py

test: lint system-deps
	$(BIN)/pytest -q
	STREAMEX_TEST_RISK=off $(BIN)/pytest -q -p no:cacheprovider $(RISK_OFF_TESTS)

up: venv
	$(BIN)/streamex up --demo

bench: dev
	$(BIN)/pytest benchmarks/ --benchmark-only

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .benchmarks .hypothesis
