# Two entry points: `make run` (default config end to end) and `make test`.
PY      := .venv/bin/python
PIP     := .venv/bin/pip
CLI     := .venv/bin/pythia-repro
CONFIG  ?= config/config.yaml
CORES   ?= 2

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
