# Wrenn: `make run` installs what is missing and starts the embedded default;
# `make test` runs the whole suite. Both are idempotent.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
DATA_DIR ?= /var/lib/wrenn
PORT ?= 8080
PYTEST_ARGS ?=

STAMP := $(VENV)/.installed

.PHONY: run test deps lint typecheck bench clean-venv

deps:
	@./scripts/install-system-deps

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install -q --upgrade pip
	@$(VENV)/bin/pip install -q -e '.[dev]'
	@touch $(STAMP)

run: deps $(STAMP)
	$(VENV)/bin/wrenn server --data-dir $(DATA_DIR) --port $(PORT)

test: deps $(STAMP)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

clean-venv:
	rm -rf $(VENV)
