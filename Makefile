# Two entry points: `make run` (default config end to end) and `make test`;
# `make test-fast` is the edit-test loop (no slow or SLURM tests).
PY      := .venv/bin/python
PIP     := .venv/bin/pip
CLI     := .venv/bin/pythia-repro
CONFIG  ?= config/config.yaml
CORES   ?= 2
# Rules call `pythia-repro`; put the venv's CLI on PATH for Snakemake and its jobs.
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: setup run report test test-fast system-packages slurm lint bench clean

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
	$(MAKE) report

# One self-contained HTML page of every figure and table, grouped by the paper's sections.
REPORT = $(shell $(PY) -c "from pythia_repro.config import load_suite; print(load_suite('$(CONFIG)').layout.report_html)")
report: setup
	.venv/bin/snakemake --configfile $(CONFIG) --report $(REPORT)

test: setup system-packages
	$(PY) -m pytest -q tests

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not slurm" tests

# System packages of the tests, installed here as root with apt-get (a no-op once installed): the
# SLURM tests' local cluster needs slurm-wlm and munge, the report test headless Chromium.
# Elsewhere the SLURM tests fail with the install hint and the browser test is skipped.
system-packages:
	@if [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then \
		bash tests/slurm/install_slurm.sh; \
		command -v chromium >/dev/null 2>&1 || { apt-get update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }; \
	fi

slurm: system-packages

lint: setup
	.venv/bin/ruff check src tests bench
	.venv/bin/snakefmt --check Snakefile workflow/rules

clean:
	rm -rf results .snakemake
