# Wrenn: `make run` installs what is missing and starts the embedded default;
# `make test` runs the whole suite. Both are idempotent.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
DATA_DIR ?= /var/lib/wrenn
PORT ?= 8080
PYTEST_ARGS ?=

STAMP := $(VENV)/.installed

CACHE_DIR ?= /var/cache/wrenn

.PHONY: run test deps template console lint typecheck bench clean-venv

deps:
	@./scripts/install-system-deps

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install -q --upgrade pip
	@$(VENV)/bin/pip install -q -e '.[dev]'
	@touch $(STAMP)

# The platform templates: `minimal` (capsules' default, ~45 s the first time), `code-runner-beta`
# (Jupyter, numpy, pandas, matplotlib; ~4 min and ~210 MB of .debs the first time) and
# `code-interpreter-v1` (code-runner-beta's base + E2B's code-interpreter server); instant when cached.
template: deps $(STAMP)
	@$(VENV)/bin/wrenn template build minimal --cache-dir $(CACHE_DIR)
	@$(VENV)/bin/wrenn template build code-runner-beta --cache-dir $(CACHE_DIR)
	@$(VENV)/bin/wrenn template build code-interpreter-v1 --cache-dir $(CACHE_DIR)

# The web console's pinned browser libraries (xterm.js), from the npm registry once, then cached.
console:
	@./scripts/fetch-console-assets

run: template console
	$(VENV)/bin/wrenn server --data-dir $(DATA_DIR) --port $(PORT)

test: template console
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

clean-venv:
	rm -rf $(VENV)
