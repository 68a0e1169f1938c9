"""The batch viewer refuses steps training never reached, and reads a model's run from the suite."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pythia_repro import cli
from pythia_repro.config import load_suite

MODEL = "pythia-pico"


@pytest.fixture(scope="module")
def config(tmp_path_factory, tiny_suite) -> Path:
    return tiny_suite(tmp_path_factory.mktemp("bounds"))


def _explicit(config: Path) -> list[str]:
    suite = load_suite(config)
    spec = suite.model(MODEL)
    return ["--data-prefix", str(suite.layout.data_prefix(spec.data)), "--train-iters", str(suite.train_iters),
            "--global-batch-size", str(suite.global_batch_size), "--seq-length", str(suite.seq_length),
            "--seed", str(spec.seed)]


def test_suite_flags_fill_the_order(config: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    assert cli.main(["batch", "--config", str(config), "--model", MODEL, "--step", "7", "--output", str(a)]) == 0
    assert cli.main(["batch", *_explicit(config), "--step", "7", "--output", str(b)]) == 0
    assert np.array_equal(np.load(a), np.load(b)) and np.load(a).shape == (4, 17)


def test_step_past_train_iters_is_refused(config: Path, capsys) -> None:
    base = ["--config", str(config), "--model", MODEL]
    assert cli.main(["batch", *base, "--step", "8", "--output", "x.npy"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pythia-repro batch: error: --step 8 is at or past train_iters (8)")
    assert "--allow-untrained" in err
    assert cli.main(["batch", *base, "--step", "-1", "--output", "x.npy"]) == 2
    assert cli.main(["locate", *base, "--training-sample", "32"]) == 2
    assert "--training-sample 32 (step 8) is at or past train_iters" in capsys.readouterr().err


def test_allow_untrained_says_so_loudly(config: Path, capsys) -> None:
    base = ["--config", str(config), "--model", MODEL]
    assert cli.main(["locate", *base, "--training-sample", "31", "32", "--allow-untrained"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)["training_samples"]
    assert [r["trained"] for r in result] == [True, False]
    assert '"trained": false' in err and "WARNING" in err


def test_config_and_model_go_together(config: Path, capsys) -> None:
    assert cli.main(["batch", "--config", str(config), "--step", "1", "--output", "x.npy"]) == 2
    assert "--config needs --model" in capsys.readouterr().err
    assert cli.main(["batch", "--step", "1", "--output", "x.npy"]) == 2
    assert "--data-prefix, --global-batch-size needed" in capsys.readouterr().err
