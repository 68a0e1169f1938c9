"""Fixtures of the evaluation tests: a tiny suite with an exported checkpoint and its task dir."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))

import ckpt_factory  # noqa: E402


@pytest.fixture(scope="session")
def eval_suite(tmp_path_factory):
    """(config path, Suite, exported dir of pythia-pico step 8, task dir)."""
    from pythia_repro.config import load_suite
    from pythia_repro.evaluate.suite_tasks import write_task_dir
    from pythia_repro.export.hf import export_suite_checkpoint

    root = tmp_path_factory.mktemp("eval-suite")
    config = ckpt_factory.make_suite(root)
    ckpt_factory.make_checkpoints(config, [dict(model="pythia-pico", step=8, zero_stage=1)])
    suite = load_suite(config)
    model_dir = root / "export" / "pythia-pico" / "step8"
    export_suite_checkpoint(suite, "pythia-pico", 8, model_dir)
    tasks_dir = root / "tasks"
    write_task_dir(suite, tasks_dir)
    return config, suite, model_dir, tasks_dir
