"""Glue used by the Snakefile at DAG-build time (nothing here runs inside jobs)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import yaml

from pythia_repro.atomic import write_text
from pythia_repro.config import Suite


def config_source(configfiles: Iterable[Path]) -> str:
    """The config files Snakemake read, as error messages name them (relative to the working
    directory when inside it)."""
    names = []
    for file in configfiles:
        rel = os.path.relpath(file)
        names.append(file if rel.startswith("..") else rel)
    return ", ".join(map(str, names)) or "config"


def publish_resolved_config(suite: Suite) -> None:
    """Write the validated config (defaults filled) to `{root}/suite.yaml` if it changed.

    Jobs read this file instead of the user's config so command-line overrides reach them;
    leaving an unchanged file alone keeps its mtime, so it never looks newer than outputs.
    """
    path = suite.layout.resolved_config
    text = yaml.safe_dump(suite.config, sort_keys=True)
    if not path.exists() or path.read_text() != text:
        write_text(path, text)
