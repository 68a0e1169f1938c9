# Two entry points: `make run` (default config end to end) and `make test`.
PY      := .venv/bin/python
PIP     := .venv/bin/pip
CLI     := .venv/bin/pythia-repro
CONFIG  ?= config/config.yaml
CORES   ?= 2
# Rules call `pythia-repro`; put the venv's CLI on PATH for Snakemake and its jobs.
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: setup run test lint bench clean

setup: .venv/.installed

# torch is pinned so this machine takes the CPU build on disk; everything else follows pyproject.toml.
.venv/.installed: pyproject.toml
	python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	touch $@

run: setup
	.venv/bin/snakemake --profile profiles/local --configfile $(CONFIG) --cores $(CORES)

test: setup
	$(PY) -m pytest -q tests

lint: setup
	.venv/bin/ruff check src tests bench

clean:
	rm -rf results .snakemake
