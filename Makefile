PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# One stamp per set of dependencies: `make up` installs only what the exchange
# needs; `make test` adds the dev extra (tests, linters, benchmarks' dependencies).
RUN_STAMP := $(VENV)/.run.stamp
DEV_STAMP := $(VENV)/.dev.stamp
# The install compiles the matching core (setup.py): again whenever its source changes.
CORE_SOURCES := setup.py matching/book.py

.PHONY: venv dev test lint system-deps up bench clean

venv: $(RUN_STAMP)

dev: $(DEV_STAMP)

$(BIN)/python:
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "error: streamex needs Python 3.11+, but $(PY) is Python " + sys.version.split()[0] + "; run: make PY=python3.11 ...")'
	$(PY) -m venv $(VENV)

$(RUN_STAMP): pyproject.toml $(CORE_SOURCES) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUN_STAMP)

$(DEV_STAMP): pyproject.toml $(CORE_SOURCES) | $(BIN)/python
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

# The matching core's tests once more on the pure-Python module, which is what runs
# where the install found no C compiler (STREAMEX_PURE=1 loads it beside the extension).
PURE_TESTS := tests/test_book.py tests/test_book_bug_classes.py tests/test_book_order_types.py \
	tests/test_book_risk.py tests/test_matching_model.py tests/test_snapshot.py \
	tests/test_peers_bench.py tests/test_compiled_core.py

test: lint system-deps
	$(BIN)/pytest -q
	STREAMEX_TEST_RISK=off $(BIN)/pytest -q -p no:cacheprovider $(RISK_OFF_TESTS)
	STREAMEX_PURE=1 $(BIN)/pytest -q -p no:cacheprovider $(PURE_TESTS)

up: venv
	$(BIN)/streamex up --demo

bench: dev
	$(BIN)/pytest benchmarks/ --benchmark-only

clean:
	rm -rf $(VENV) build dist *.egg-info matching/*.so matching/*.sha256 .pytest_cache .mypy_cache .ruff_cache .benchmarks .hypothesis
