# Lumbar Sentinel: `make run` serves a node on the embedded default (SQLite and
# a local storage folder); `make test` installs everything the tests need and
# runs the whole suite.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: run test install system-deps services lint typecheck evaluate bench clean

run: install
	$(BIN)/lumbar-sentinel serve

test: system-deps services install
	$(BIN)/pytest $(PYTEST_ARGS)

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

# The DICOM peers the tests talk to: DCMTK and dicom3tools from Debian.
system-deps:
	./scripts/ensure-system-deps.sh

# PostgreSQL for the tests that run on it (started when it is down).
services:
	./scripts/ensure-postgres.sh

lint: install
	$(BIN)/ruff check node analysis phantom tests scripts benchmarks

typecheck: install
	$(BIN)/mypy

evaluate: install
	$(BIN)/python scripts/evaluate_vertebrae.py
	$(BIN)/python scripts/evaluate_signs.py

# Issue 21's figures, each against its reference (`BENCH_ARGS=--quick` for a short run).
bench: system-deps services install
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
