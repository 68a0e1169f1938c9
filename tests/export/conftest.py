"""Fixtures of the export/upload tests: a tiny suite with real DeepSpeed checkpoints (ZeRO 0-3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pythia_repro.testing import checkpoints as ckpt_factory


@pytest.fixture(scope="session")
def tiny_suite(tmp_path_factory):
    """(config path, Suite) of a tiny suite whose CHECKPOINTS exist, as the trainer writes them."""
    from pythia_repro.config import load_suite

    root = tmp_path_factory.mktemp("export-suite")
    config = ckpt_factory.make_suite(root)
    ckpt_factory.make_checkpoints(config, [dict(model=m, step=s, zero_stage=z) for m, s, z in ckpt_factory.CHECKPOINTS])
    return config, load_suite(config)


@pytest.fixture(scope="session")
def exported(tiny_suite, tmp_path_factory):
    """Export a checkpoint once per session: exported(model, step) -> directory."""
    from pythia_repro.export.hf import export_suite_checkpoint
    from pythia_repro.layout import Layout

    _, suite = tiny_suite
    out = tmp_path_factory.mktemp("exports")
    done: dict = {}

    def get(model: str, step: int) -> Path:
        if (model, step) not in done:
            path = Layout(out).export_dir(model, step)
            export_suite_checkpoint(suite, model, step, path)
            done[model, step] = path
        return done[model, step]

    return get
