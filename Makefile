# The README's commands. Each works on a fresh Debian machine with Python 3.11:
# it creates the virtual environment, installs what is missing, then runs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint unit chaos bench deps system-deps clean conformance

demo: deps
	$(PY) -m chaos demo

test: deps lint
	$(PY) -m pytest -q -p no:cacheprovider

lint: deps
	$(VENV)/bin/ruff check guard chaos tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# Third-party clients' own suites (official Python e2e, kubectl 1.27/1.32/1.33, lightkube, kr8s)
# against the simulator and through guard; prints a suite-by-target table.
conformance: deps
	$(PY) -m pip install -q -e '.[dev,conformance]'
	$(PY) -m chaos conformance

chaos: deps
	$(PY) -m chaos run all --report reports/chaos

bench: deps
	@bash scripts/system-deps.sh nginx haproxy wrk
	$(PY) -m bench

deps: $(STAMP) system-deps

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# redis-server backs the federation tests (they start their own on free ports); wrk drives the
# benchmark smoke run in the test suite.
system-deps:
	@bash scripts/system-deps.sh

clean:
	rm -rf $(VENV) reports .mypy_cache .ruff_cache
