"""Data parallelism on CPU: 2 ranks (torchrun + gloo, ZeRO-1) train like 1 rank on the same global batch.

One rank runs the global batch of 4 as 2 accumulation steps of 2; two ranks run one micro-batch
of 2 each. Same samples, same mean loss, so losses and weights agree up to float summation order.
"""

from __future__ import annotations

import pytest
import torch

from pythia_repro.config import load_suite
from pythia_repro.layout import Layout
from pythia_repro.train.checkpoint import complete_checkpoints
from pythia_repro.train.metrics import read_metrics

pytestmark = pytest.mark.slow  # two trainings, one of them on 2 ranks: ~2.5 min

MODEL = "pythia-pico"


def _module(tag_dir):
    return torch.load(tag_dir / "mp_rank_00_model_states.pt", weights_only=False)["module"]


def test_two_ranks_match_one_rank(tmp_path, tiny_suite, run_cli) -> None:
    one = tiny_suite(tmp_path / "one")
    two = tiny_suite(tmp_path / "two")
    args = ("--model", MODEL, "--until-step", "4")
    run_cli("launch", "--config", str(one), *args)  # one rank: in-process, no launcher
    proc = run_cli("launch", "--config", str(two), "--ranks", "2", *args)
    assert "torch.distributed.run" in proc.stderr  # auto: torchrun outside SLURM

    l1, l2 = Layout(load_suite(one).root), Layout(load_suite(two).root)
    rows1 = read_metrics(l1.metrics(MODEL))
    rows2 = read_metrics(l2.metrics(MODEL))
    assert [r["step"] for r in rows2] == [1, 2, 3, 4]
    for a, b in zip(rows1, rows2, strict=True):
        assert abs(a["loss"] - b["loss"]) <= 1e-5 * a["loss"], (a, b)
        assert abs(a["grad_norm"] - b["grad_norm"]) <= 1e-4 * a["grad_norm"], (a, b)
        assert a["lr"] == b["lr"]

    manifest = complete_checkpoints(l2.checkpoints_dir(MODEL))[4]
    assert manifest["world_size"] == 2
    assert len(list(l2.checkpoint(MODEL, 4).glob("*optim_states.pt"))) == 2  # one ZeRO partition per rank
    assert len(list(l2.checkpoint(MODEL, 4).glob("rng_rank*.pt"))) == 2
    w1, w2 = _module(l1.checkpoint(MODEL, 4)), _module(l2.checkpoint(MODEL, 4))
    for name in w1:
        torch.testing.assert_close(w1[name], w2[name], rtol=1e-4, atol=1e-5, msg=name)
