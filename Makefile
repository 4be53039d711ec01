# Thin wrappers: every target works on a fresh clone with only Python 3.11+ and make.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-12s %s\n", $$1, $$2}'

# Runtime dependencies at the versions of constraints.lock, as in the Docker image: what is
# tested is what ships. setuptools upgraded too: the copy venv seeds on Python 3.11 (65.5) has
# published advisories, and make audit checks everything installed here.
$(STAMP): pyproject.toml constraints.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools
	$(BIN)/pip install --quiet -e '.[dev]' --constraint constraints.lock
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the service with its dev tools

# On a terminal the log is readable text, unless LOG_FORMAT says otherwise; piped or redirected,
# it stays JSON, the service's default.
run: $(STAMP) ## serve the API on :8080 (embedded PostgreSQL unless DATABASE_URL is set)
	if [ -t 1 ]; then export LOG_FORMAT="$${LOG_FORMAT:-text}"; fi; $(BIN)/python -m service serve

migrate: $(STAMP) ## apply pending migrations
	$(BIN)/python -m service migrate

populate: $(STAMP) ## fetch and store tweets once, from the command line
	$(BIN)/python -m service populate

sample: $(STAMP) ## regenerate the bundled offline sample
	$(BIN)/python -m tools.samplegen --out service/sample_data

lock: ## pin the runtime dependencies for the Docker image into constraints.lock
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet .
	{ sed -n '1,2p' constraints.lock; .lock-venv/bin/pip freeze --exclude hashtag-analytics; } > constraints.lock.new
	mv constraints.lock.new constraints.lock && rm -rf .lock-venv

env: ## create .env for docker compose with random secrets (an existing .env is kept)
	$(PYTHON) observability/make-env.py

up: env ## start the whole stack with docker compose
	docker compose up -d --build

down: ## stop the stack (data volumes are kept)
	docker compose down

fmt: $(STAMP) ## format and autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

lint: $(STAMP) ## mypy, ruff check, ruff format --check
	$(BIN)/mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) ## mypy only
	$(BIN)/mypy

bench: $(STAMP) ## benchmarks into bench/results.md and .json (BENCH_QUICK=1: a smoke run); needs wrk, haproxy
	$(BIN)/pip install --quiet -e '.[dev,bench]' --constraint constraints.lock
	bench/setup.sh
	$(BIN)/python -m bench

pytest: $(STAMP) ## the test suite only
	$(BIN)/pytest

test: lint pytest ## everything CI checks: lint, types, the whole test suite

stack-test: $(STAMP) ## HAProxy, Prometheus, blackbox and two API replicas on 127.0.0.1 (needs the tools)
	PATH="$(CURDIR)/.ci/node/node_modules/.bin:$$PATH" $(BIN)/pytest -m stack tests/stack

audit: $(STAMP) ## known vulnerabilities in the installed packages (pip-audit), the service itself skipped
	$(BIN)/pip-audit --skip-editable --progress-spinner off $(AUDIT_FLAGS)

.PHONY: help install run migrate populate sample lock env up down fmt lint typecheck bench pytest test stack-test audit
