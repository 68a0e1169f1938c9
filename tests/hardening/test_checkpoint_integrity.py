"""Checkpoints verify themselves: a corrupt one is detected, moved aside and resumed around.

One uninterrupted run of the tiny suite (0 -> 8, checkpoints 0, 1, 2, 4, 8) is the reference.
A second run trains to 4; then its step-4 optimizer partition is truncated and its step-2 model
file emptied. The next segment must name both files, move both checkpoints aside (never delete
them), resume from step 1 and end with the reference's losses and weights.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from pythia_repro import cli as cli_main
from pythia_repro.config import load_suite
from pythia_repro.layout import CHECKPOINT_MANIFEST, Layout
from pythia_repro.train import checkpoint
from pythia_repro.train.metrics import read_metrics

MODEL = "pythia-pico"
OPTIM = "zero_pp_rank_0_mp_rank_00_optim_states.pt"
WEIGHTS = "mp_rank_00_model_states.pt"


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_suite, run_cli) -> Path:
    config = tiny_suite(tmp_path_factory.mktemp("reference"))
    run_cli("train", "--config", str(config), "--model", MODEL, "--until-step", "8", "--no-tensorboard")
    return config


def _weights(tag_dir: Path) -> dict:
    return torch.load(tag_dir / WEIGHTS, map_location="cpu", weights_only=False)["module"]


def test_manifest_records_sizes_and_checksums(reference: Path) -> None:
    tag_dir = Layout(load_suite(reference).root).checkpoint(MODEL, 8)
    files = json.loads((tag_dir / CHECKPOINT_MANIFEST).read_text())["files"]
    assert {WEIGHTS, OPTIM, "rng_rank0.pt"} <= set(files)
    for name, record in files.items():
        assert record["size"] == (tag_dir / name).stat().st_size
        assert record["xxh3_64"] == checkpoint.file_checksum(tag_dir / name)
    assert checkpoint.verify(tag_dir)["step"] == 8


def test_verify_names_file_and_reason(reference: Path, tmp_path: Path) -> None:
    import shutil

    src = Layout(load_suite(reference).root).checkpoint(MODEL, 8)
    tag_dir = tmp_path / "checkpoints" / "step8"
    shutil.copytree(src, tag_dir)
    # Same size, one flipped byte: only the checksum can tell.
    data = bytearray((tag_dir / "rng_rank0.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tag_dir / "rng_rank0.pt").write_bytes(bytes(data))
    with pytest.raises(checkpoint.CheckpointError, match=r"rng_rank0.pt: xxh3_64 checksum mismatch"):
        checkpoint.verify(tag_dir)
    assert checkpoint.verify(tag_dir, checksums=False)  # sizes alone pass

    # A manifest from before checksums: sizes and zip integrity only, and it still loads.
    manifest = json.loads((tag_dir / CHECKPOINT_MANIFEST).read_text())
    del manifest["files"]
    (tag_dir / CHECKPOINT_MANIFEST).write_text(json.dumps(manifest))
    assert checkpoint.verify(tag_dir)["step"] == 8
    with open(tag_dir / OPTIM, "r+b") as fh:
        fh.truncate(fh.seek(0, os.SEEK_END) // 2)
    with pytest.raises(checkpoint.CheckpointError, match=rf"{OPTIM}: unreadable torch file"):
        checkpoint.verify(tag_dir)
    (tag_dir / WEIGHTS).unlink()
    with pytest.raises(checkpoint.CheckpointError, match=rf"{WEIGHTS}: missing"):
        checkpoint.verify(tag_dir)


def test_corrupt_checkpoints_are_moved_aside_and_resumed_around(reference: Path, tmp_path: Path, tiny_suite,
                                                                  run_cli, capsys) -> None:
    config = tiny_suite(tmp_path)
    layout = Layout(load_suite(config).root)
    ckpt_dir = layout.checkpoints_dir(MODEL)
    args = ("train", "--config", str(config), "--model", MODEL, "--no-tensorboard")
    run_cli(*args, "--until-step", "4")

    with open(layout.checkpoint(MODEL, 4) / OPTIM, "r+b") as fh:
        fh.truncate(fh.seek(0, os.SEEK_END) - 100)
    (layout.checkpoint(MODEL, 2) / WEIGHTS).write_bytes(b"")

    # verify-checkpoints reports both, moves nothing, exits non-zero.
    assert cli_main.main(["verify-checkpoints", "--config", str(config), "--model", MODEL]) == 1
    out = capsys.readouterr().out
    assert f"{MODEL} step4: corrupt: {OPTIM}: truncated" in out
    assert f"{MODEL} step2: corrupt: {WEIGHTS}: zero-byte" in out
    assert f"{MODEL} step1: ok" in out
    assert sorted(checkpoint.complete_checkpoints(ckpt_dir)) == [0, 1, 2, 4]

    proc = run_cli(*args, "--until-step", "8")
    assert f"step4: corrupt checkpoint: {OPTIM}: truncated" in proc.stderr
    assert f"step2: corrupt checkpoint: {WEIGHTS}: zero-byte" in proc.stderr
    assert "resumed at step 1" in proc.stderr
    moved = sorted(p.name.split(".")[0] for p in ckpt_dir.glob("step*.corrupt-*"))
    assert moved == ["step2", "step4"], "corrupt checkpoints must be kept, renamed"
    assert sorted(checkpoint.complete_checkpoints(ckpt_dir)) == [0, 1, 2, 4, 8]

    ref = Layout(load_suite(reference).root)
    ref_rows, rows = read_metrics(ref.metrics(MODEL)), read_metrics(layout.metrics(MODEL))
    assert [r["step"] for r in rows] == list(range(1, 9))
    assert [(r["loss"], r["grad_norm"]) for r in rows] == [(r["loss"], r["grad_norm"]) for r in ref_rows]
    for name, tensor in _weights(ref.checkpoint(MODEL, 8)).items():
        assert torch.equal(tensor, _weights(layout.checkpoint(MODEL, 8))[name]), name

    assert cli_main.main(["verify-checkpoints", "--config", str(config), "--model", MODEL]) == 0
    assert "step4: quarantined" in capsys.readouterr().out


def test_no_checkpoint_verifies_is_a_clear_error(reference: Path, tmp_path: Path, tiny_suite, run_cli) -> None:
    import shutil

    config = tiny_suite(tmp_path)
    layout = Layout(load_suite(config).root)
    src = Layout(load_suite(reference).root).checkpoint(MODEL, 1)
    shutil.copytree(src, layout.checkpoint(MODEL, 1))
    (layout.checkpoint(MODEL, 1) / WEIGHTS).write_bytes(b"")
    proc = run_cli("train", "--config", str(config), "--model", MODEL, "--until-step", "2", check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("pythia-repro train: error: ") and "no checkpoint of pythia-pico verifies" in last
    assert "Traceback" not in proc.stderr
