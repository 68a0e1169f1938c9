"""Fixtures of the evaluation tests: a tiny suite with an exported checkpoint and its task dir."""

from __future__ import annotations

import pytest

from pythia_repro.testing import checkpoints as ckpt_factory


@pytest.fixture(scope="session")
def eval_suite(tmp_path_factory):
    """(config path, Suite, exported dir of pythia-pico step 8, task dir)."""
    from pythia_repro.config import load_suite
    from pythia_repro.evaluate.suite_tasks import write_task_dir
    from pythia_repro.export.hf import export_suite_checkpoint
    from pythia_repro.layout import Layout

    root = tmp_path_factory.mktemp("eval-suite")
    config = ckpt_factory.make_suite(root)
    ckpt_factory.make_checkpoints(config, [dict(model="pythia-pico", step=8, zero_stage=1)])
    suite = load_suite(config)
    model_dir = Layout(suite.root).export_dir("pythia-pico", 8)
    export_suite_checkpoint(suite, "pythia-pico", 8, model_dir)
    tasks_dir = Layout(suite.root).eval_tasks_dir
    write_task_dir(suite, tasks_dir)
    return config, suite, model_dir, tasks_dir
