"""Segments, signals and kills: any interruption resumes to bit-identical weights and losses (CPU).

One uninterrupted run of the tiny suite (8 steps, checkpoints 0, 1, 2, 4, 8) is the reference.
The same run is then taken through everything a cluster does to a job: a SIGTERM mid-segment
(checkpoint off the schedule, exit 75), a rerun, a segment boundary, a SIGKILL between
checkpoints, a final rerun. Weights, optimizer state and every logged loss must equal the
reference bit for bit. An intervention then branches from the reference's step-4 checkpoint.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from pythia_repro.config import load_suite
from pythia_repro.layout import CHECKPOINT_MANIFEST, Layout
from pythia_repro.train.checkpoint import complete_checkpoints
from pythia_repro.train.metrics import read_metrics
from pythia_repro.train.trainer import PREEMPTED

# Every test here shares the reference run (one 8-step training, ~2 min on a busy 2-core machine).
pytestmark = pytest.mark.slow

MODEL = "pythia-pico"


def _states(tag_dir: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a DeepSpeed checkpoint (module weights and ZeRO optimizer partition)."""
    out = {}
    for path in sorted(tag_dir.glob("*_states.pt")):
        state = torch.load(path, map_location="cpu", weights_only=False)

        def walk(prefix, value):
            if isinstance(value, torch.Tensor):
                out[prefix] = value
            elif isinstance(value, dict):
                for k, v in value.items():
                    walk(f"{prefix}.{k}", v)
            elif isinstance(value, (list, tuple)):
                for i, v in enumerate(value):
                    walk(f"{prefix}[{i}]", v)

        walk(path.name, {k: state[k] for k in ("module", "optimizer_state_dict") if k in state})
    return out


def _assert_identical(a: Path, b: Path) -> None:
    sa, sb = _states(a), _states(b)
    assert sa.keys() == sb.keys() and sa
    for key in sa:
        assert torch.equal(sa[key], sb[key]), f"{key} differs between {a} and {b}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_suite, run_cli) -> Path:
    """The uninterrupted run: one process trains 0 -> 8."""
    root = tmp_path_factory.mktemp("reference")
    config = tiny_suite(root)
    run_cli("train", "--config", str(config), "--model", MODEL, "--until-step", "8")
    return config


def test_reference_run_writes_schedule_manifests_and_metrics(reference: Path) -> None:
    suite = load_suite(reference)
    layout = Layout(suite.root)
    ckpts = complete_checkpoints(layout.checkpoints_dir(MODEL))
    assert list(ckpts) == suite.model_checkpoint_steps(MODEL) == [0, 1, 2, 4, 8]
    manifest = ckpts[8]
    for key in ("step", "model", "arch", "size", "shape", "vocab_size", "seq_length", "hf_config", "tokenizer",
                "zero_stage", "samples_consumed"):
        assert key in manifest, key
    assert manifest["complete"] is True and manifest["scheduled"] is True
    assert manifest["samples_consumed"] == 8 * 4 and manifest["vocab_size"] == 128
    assert manifest["hf_config"]["model_type"] == "gpt_neox"
    # Module weights under the Hugging Face state-dict names.
    module = torch.load(layout.checkpoint(MODEL, 8) / "mp_rank_00_model_states.pt", weights_only=False)["module"]
    assert "gpt_neox.embed_in.weight" in module and "lm_head.weight" in module
    rows = read_metrics(layout.metrics(MODEL))
    assert [r["step"] for r in rows] == list(range(1, 9))
    # GPT-NeoX AnnealingLR, warmup 0.25 x 8 = 2 steps: update t runs at lr(t), the first at 0.
    assert rows[0]["lr"] == 0.0 and rows[1]["lr"] == pytest.approx(5e-3) and rows[2]["lr"] == pytest.approx(1e-2)
    assert all(r["loss"] > 0 and r["grad_norm"] > 0 for r in rows)
    marker = json.loads(layout.segment_marker(MODEL, 8).read_text())
    assert marker["complete"] and marker["until_step"] == 8


def test_interrupted_run_is_bit_identical(reference: Path, tmp_path: Path, tiny_suite, run_cli) -> None:
    config = tiny_suite(tmp_path)
    cli = run_cli
    layout = Layout(load_suite(config).root)
    ckpt_dir = layout.checkpoints_dir(MODEL)
    args = ("train", "--config", str(config), "--model", MODEL)

    # SLURM's warning signal at step 3: checkpoint off the schedule, exit non-zero, no marker.
    proc = cli(*args, "--until-step", "4", signal_at=(3, "TERM"), check=False)
    assert proc.returncode == PREEMPTED, proc.stderr[-3000:]
    assert complete_checkpoints(ckpt_dir)[3]["scheduled"] is False
    assert not layout.segment_marker(MODEL, 4).exists()

    # The rerun finishes the segment from step 3.
    cli(*args, "--until-step", "4")
    assert layout.segment_marker(MODEL, 4).is_file()

    # Next segment, killed outright after step 6 (last complete checkpoint: 4), plus a torn save.
    proc = cli(*args, "--until-step", "8", signal_at=(6, "KILL"), check=False)
    assert proc.returncode == -9
    assert max(complete_checkpoints(ckpt_dir)) == 4
    assert 3 not in complete_checkpoints(ckpt_dir), "off-schedule checkpoint outlived a newer one"
    shutil.copytree(layout.checkpoint(MODEL, 4), layout.checkpoint(MODEL, 7))
    (layout.checkpoint(MODEL, 7) / CHECKPOINT_MANIFEST).unlink()
    assert len(read_metrics(layout.metrics(MODEL))) == 6

    proc = cli(*args, "--until-step", "8")
    assert not layout.checkpoint(MODEL, 7).exists(), "incomplete checkpoint was not cleaned"
    assert "resumed at step 4" in proc.stderr

    ref = Layout(load_suite(reference).root)
    for step in (4, 8):
        _assert_identical(ref.checkpoint(MODEL, step), layout.checkpoint(MODEL, step))
    ref_rows = read_metrics(ref.metrics(MODEL))
    rows = read_metrics(layout.metrics(MODEL))
    assert [r["step"] for r in rows] == list(range(1, 9)), "a resumed step was logged twice"
    assert [(r["loss"], r["lr"], r["grad_norm"]) for r in rows] == [
        (r["loss"], r["lr"], r["grad_norm"]) for r in ref_rows
    ]


def test_intervention_branches_from_base_checkpoint(reference: Path, run_cli) -> None:
    suite = load_suite(reference)
    spec = suite.model("pythia-pico-genderswap")
    assert spec.branch_step == 4
    proc = run_cli("train", "--config", str(reference), "--model", spec.name, "--until-step", "8")
    assert "branched from pythia-pico at step 4" in proc.stderr
    assert "substitution gender_swap: 4 token pairs" in proc.stderr
    layout = Layout(suite.root)
    ckpts = complete_checkpoints(layout.checkpoints_dir(spec.name))
    assert list(ckpts) == suite.model_checkpoint_steps(spec.name) == [8]
    rows = read_metrics(layout.metrics(spec.name))
    base_rows = read_metrics(layout.metrics(MODEL))
    assert [r["step"] for r in rows] == [5, 6, 7, 8]
    # Same schedule position (the scheduler state came with the optimizer), different data.
    assert [r["lr"] for r in rows] == [r["lr"] for r in base_rows[4:]]
    assert [r["loss"] for r in rows] != [r["loss"] for r in base_rows[4:]]


def test_loss_figure(reference: Path, tmp_path: Path) -> None:
    from pythia_repro.cli import main

    output = tmp_path / "figures" / "loss.png"
    assert main(["plot-loss", "--config", str(reference), "--output", str(output)]) == 0
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
