# notifq's entry points. `make run` and `make test` work on a fresh machine: they create
# the virtualenv on first use, and start embedded PostgreSQL/Valkey unless DATABASE_URL /
# REDIS_URL (or NOTIFQ_TEST_DATABASE_URL / NOTIFQ_TEST_REDIS_URL for tests) are set.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WORKERS ?= 1
STAMP := $(VENV)/.installed

.PHONY: install run test scale bench chaos migrate lint format

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: install
	$(BIN)/notifq dev --workers $(WORKERS)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

scale: install
	$(BIN)/notifq scale $(WORKERS)

bench: install
	$(BIN)/python scripts/bench.py $(BENCH_ARGS)

# Faults mid-campaign, the invariant checked in SQL after each (docs/chaos.md); CHAOS_ARGS=--short for the CI form.
chaos: install
	$(BIN)/python scripts/chaos.py $(CHAOS_ARGS)

migrate: install
	$(BIN)/notifq migrate

lint: install
	$(BIN)/ruff check src tests scripts migrations
	$(BIN)/ruff format --check src tests scripts migrations
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache --no-logo

format: install
	$(BIN)/ruff check --fix src tests scripts migrations
	$(BIN)/ruff format src tests scripts migrations
