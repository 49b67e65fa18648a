# The two commands of the README: `make demo` and `make test`. Both create or
# refresh .venv at the repository root, install the project into it and fetch
# the Kafka jars (once) before they run; `make test` first installs the system
# tools the tests need (infra/ensure-tools.sh).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SOURCES := src services tests bench

GANACHE := .cache/ganache/node_modules/.bin/ganache

.PHONY: help venv kafka tools ganache records demo test test-fast lint format chaos chaos-cluster bench bench-e2e bench-soak bench-e2e-profile coverage-nojit clean

help:
	@echo "make demo   - set up and run the clearing house demo on a local Kafka broker"
	@echo "make test   - set up, lint, and run the whole test suite against a real broker"
	@echo "make lint   - ruff and mypy (strict on src/, services/ and bench/)"
	@echo "make records - regenerate the TypedDicts of the Avro records from schemas/"
	@echo "make tools  - install the system tools the tests need (chromium) when missing"
	@echo "make ganache - install the JSON-RPC node of the token-rail test (npm, pinned)"
	@echo "make chaos  - the long chaos run: kills, broker restarts, pauses (last line JSON)"
	@echo "make chaos-cluster - failover chaos on three brokers: leader and controller kills, a rolling restart (last line JSON)"
	@echo "make bench  - the benchmarks (they print ratios, last line JSON)"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (found " + sys.version.split()[0] + ")")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

kafka: venv
	$(BIN)/clearing broker fetch

tools:
	infra/ensure-tools.sh

# A real Ethereum JSON-RPC node (ganache, from npm with the pinned lock file) for the
# token-rail test against a node process; Node.js 20 and npm are assumed, as Java is.
$(GANACHE): infra/ganache/package.json infra/ganache/package-lock.json
	@command -v npm >/dev/null || { echo "error: the tests need npm (Node.js 20) for ganache: install nodejs and npm, then make test again" >&2; exit 1; }
	mkdir -p .cache/ganache
	cp infra/ganache/package.json infra/ganache/package-lock.json .cache/ganache/
	npm ci --prefix .cache/ganache --no-audit --no-fund --loglevel=error
	@touch $(GANACHE)

ganache: $(GANACHE)

# The TypedDicts of the Avro records (src/clearing_core/encoding/records.py), from schemas/:
# run after changing a schema (tests/core/encoding/test_records.py fails until then).
records: venv
	$(BIN)/python -m clearing_core.encoding.records_gen

demo: kafka
	$(BIN)/clearing demo

lint: venv
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/mypy

format: venv
	$(BIN)/ruff check --fix $(SOURCES)
	$(BIN)/ruff format $(SOURCES)

test: tools kafka ganache lint
	$(BIN)/pytest

test-fast: kafka ganache
	$(BIN)/pytest -m "not broker and not slow"

chaos: kafka
	$(BIN)/python -m tests.support.chaos

chaos-cluster: kafka
	$(BIN)/python -m tests.support.chaos_cluster

bench: kafka
	$(BIN)/python bench/codec.py
	$(BIN)/python bench/netting.py
	$(BIN)/python bench/seen.py

bench-e2e: kafka
	$(BIN)/python bench/e2e.py --ingest-workers 2 --netting-apart

bench-soak: kafka
	$(BIN)/python bench/soak.py

bench-e2e-profile: kafka
	$(BIN)/python -m pip install -q py-spy
	$(BIN)/python bench/e2e.py --events 600000 --naive-events 20000 --profile 45

clean:
	-$(BIN)/clearing broker stop
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache .hypothesis
