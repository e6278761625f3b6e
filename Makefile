# The README's commands. Everything sets itself up: a fresh Debian machine with Python 3.11 needs nothing else.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install run demo test lint services migrate ci fmt bench

help: ## Show the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  echo "python3 -m venv failed: installing python3-venv" >&2; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null && \
	  $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install the hub with its development tools

run: install ## Migrate and serve the hub on the embedded default (SQLite file, in-process jobs)
	$(BIN)/ocpi-hub db upgrade
	$(BIN)/ocpi-hub serve

demo: install ## Hub + simulated CPOs/eMSPs in a temporary folder: a day of roaming, then clearing and statements
	$(BIN)/ocpi-hub demo

services: ## Start (or install) PostgreSQL and Redis for the tests
	@bash deploy/local/services.sh

lint: install ## ruff, mypy --strict and the import-linter layering contracts
	$(BIN)/ruff format --check hub routing clearing tests migrations
	$(BIN)/ruff check hub routing clearing tests migrations
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: install ## Format and autofix
	$(BIN)/ruff format hub routing clearing tests migrations
	$(BIN)/ruff check --fix hub routing clearing tests migrations

test: install services lint ## Lint, then the whole suite against real PostgreSQL and Redis
	$(BIN)/pytest -n 2 -p no:cacheprovider

bench: install services ## Benchmarks against nginx and direct calls (writes tests/benchmarks/results.json)
	@command -v nginx >/dev/null && command -v wrk >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk >/dev/null; }
	$(BIN)/python -m tests.benchmarks.run

migrate: install ## Apply migrations to HUB_DATABASE_URL (default: the SQLite file)
	$(BIN)/ocpi-hub db upgrade

ci: test ## What CI runs
