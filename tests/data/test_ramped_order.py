"""A batch-ramped suite's data order: index maps, batches by step, the batch viewer and locate.

The tiny suite here takes 2 sequences per step for steps 0-2 and 4 from step 3 on, so by hand
step t starts at training sample 0, 2, 4, 6, 10, 14, 18, 22 and the 8 steps consume 26 samples
(GPT-NeoX's index maps ask for ceil(26 x 1.005) = 27).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pythia_repro import cli
from pythia_repro.config import load_suite
from pythia_repro.data.batch import TrainingOrder

MODEL = "pythia-pico"
STARTS = [0, 2, 4, 6, 10, 14, 18, 22, 26]


@pytest.fixture(scope="module")
def config(tmp_path_factory, tiny_suite) -> Path:
    return tiny_suite(tmp_path_factory.mktemp("ramp"), batch_ramp=[{"until_step": 3, "global_batch_size": 2}])


@pytest.fixture(scope="module")
def order(config: Path) -> TrainingOrder:
    suite = load_suite(config)
    spec = suite.model(MODEL)
    return TrainingOrder(suite.layout.data_prefix(spec.data), suite.train_iters, suite.batch_schedule,
                         suite.seq_length, spec.seed)


def test_maps_are_named_for_the_ramps_samples(config: Path, order: TrainingOrder) -> None:
    assert load_suite(config).num_samples == order.num_samples == 27
    assert all("_27ns_" in path.name for path in order.paths.values())


def test_batches_partition_the_order_by_the_ramp(order: TrainingOrder) -> None:
    batches = [order.batch(t) for t in range(8)]
    assert [len(b) for b in batches] == [2, 2, 2, 4, 4, 4, 4, 4]
    np.testing.assert_array_equal(np.concatenate(batches), order.samples(0, 26))
    for t in range(8):
        np.testing.assert_array_equal(batches[t], order.samples(STARTS[t], STARTS[t + 1]))
    assert [order.step_of(j) for j in (0, 5, 6, 9, 10, 25)] == [(0, 0), (2, 1), (3, 0), (3, 3), (4, 0), (7, 3)]
    assert order.num_steps == 3 + (len(order) - 6) // 4


def test_batch_viewer_reads_the_ramp_from_the_suite(config: Path, order: TrainingOrder, tmp_path: Path) -> None:
    for step, rows in [(1, 2), (3, 4), (7, 4)]:
        out = tmp_path / f"step{step}.npy"
        assert cli.main(["batch", "--config", str(config), "--model", MODEL, "--step", str(step),
                         "--output", str(out)]) == 0
        tokens = np.load(out)
        assert tokens.shape == (rows, 17)
        np.testing.assert_array_equal(tokens, order.batch(step))


def test_locate_answers_by_the_ramp(config: Path, order: TrainingOrder, capsys) -> None:
    base = ["locate", "--config", str(config), "--model", MODEL]
    assert cli.main([*base, "--training-sample", "5", "6", "25"]) == 0
    found = json.loads(capsys.readouterr().out)["training_samples"]
    assert [(r["step"], r["position"], r["trained"]) for r in found] == [(2, 1, True), (3, 0, True), (7, 3, True)]
    # Sample 26 is the first of step 8, past training; a constant batch of 4 would call it step 6.
    assert cli.main([*base, "--training-sample", "26"]) == 2
    assert "--training-sample 26 (step 8) is at or past train_iters" in capsys.readouterr().err
    i = order.sample_index(10)
    assert cli.main([*base, "--sample", str(i)]) == 0
    (loc,) = json.loads(capsys.readouterr().out)["samples"]
    assert (loc["training_index"], loc["step"], loc["position"]) == (10, 4, 0)


def test_order_verb_builds_the_ramped_maps_from_the_suite(config: Path, order: TrainingOrder, tmp_path: Path,
                                                          capsys) -> None:
    prefix = tmp_path / "copy"
    for suffix in (".bin", ".idx"):
        shutil.copy(order.data_prefix + suffix, str(prefix) + suffix)
    assert cli.main(["order", "--config", str(config), "--data-prefix", str(prefix), "--seed", "1234"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["num_samples_requested"] == 27
    for kind, path in summary["files"].items():
        assert Path(path).name.endswith(f"_27ns_16sl_1234s_{kind}_idx.npy")
        np.testing.assert_array_equal(np.load(path), np.load(order.paths[kind]))
