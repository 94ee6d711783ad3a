# The README's commands. Each works on a fresh Debian machine with Python 3.11:
# it creates the virtual environment, installs what is missing, then runs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint unit chaos bench fuzz harden deps system-deps clean image image-digest lock conformance

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

# Property-based fuzzers only (`@pytest.mark.fuzz`, tests/fuzzing.py), each trying EXAMPLES inputs
# (`make test` runs them with 40). About 2 minutes for guard's HTTP parser path at 3,000.
EXAMPLES ?= 3000
fuzz: deps
	GUARD_FUZZ_EXAMPLES=$(EXAMPLES) $(PY) -m pytest -q -p no:cacheprovider -m fuzz -s

# The resource-exhaustion test at full scale (10x maxConnections 1,000 and the policies' limits);
# `make test` runs it scaled down. Prints its figures. About 3 minutes.
harden: deps
	GUARD_EXHAUSTION=full $(PY) -m pytest -q -p no:cacheprovider -m exhaustion -s

bench: deps
	@bash scripts/system-deps.sh nginx haproxy wrk h2load
	$(PY) -m bench

deps: $(STAMP) system-deps

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# redis-server backs the federation tests (they start their own on free ports); wrk drives the
# benchmark smoke run in the test suite; promtool checks and unit-tests the alert rules.
system-deps:
	@bash scripts/system-deps.sh

clean:
	rm -rf $(VENV) reports .mypy_cache .ruff_cache

# The image (Containerfile), labelled with the version and commit it was built from. Needs podman or
# docker with a running engine: `make image IMAGE=registry.example.com/guard`, then push it.
VERSION = $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
ENGINE ?= $(shell command -v podman || command -v docker)
IMAGE ?= guard
image:
	$(ENGINE) build -f Containerfile -t $(IMAGE):$(VERSION) --build-arg VERSION=$(VERSION) \
	    --build-arg REVISION=$(shell git rev-parse HEAD) .

# Prints the Containerfile's `ARG BASE=` pinned to the digest its tag points at now (WRITE=1 writes
# it into the Containerfile). Needs the network and crane, skopeo or docker buildx.
image-digest:
	@bash scripts/image-digest.sh $(if $(WRITE),--write)

# requirements.lock (guard's runtime dependencies) and requirements-build.lock (its build backend),
# pinned with hashes for the image. Run after changing dependencies in pyproject.toml (needs PyPI).
LOCK_VENV := $(VENV)/lock-tools
lock:
	test -x $(LOCK_VENV)/bin/pip-compile || { $(PYTHON) -m venv $(LOCK_VENV) && $(LOCK_VENV)/bin/pip install -q pip-tools; }
	CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile -q --generate-hashes --strip-extras \
	    --allow-unsafe --no-emit-index-url --no-emit-find-links -o requirements.lock pyproject.toml
	CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile -q --generate-hashes --strip-extras \
	    --allow-unsafe --no-emit-index-url --no-emit-find-links --only-build-deps --all-build-deps \
	    -o requirements-build.lock pyproject.toml
