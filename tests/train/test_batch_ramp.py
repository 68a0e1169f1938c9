"""The trainer under a batch ramp: DeepSpeed's real engine changes its gradient accumulation at
each ramp boundary, and a run resumed inside a middle phase is bit-identical to an uninterrupted one.

The tiny suite trains 5 steps: 2 sequences for steps 0-1 (one micro-batch of 2), 4 for steps 2-3
(two), then 8 (four); the engine is built for the last. By hand, step t starts at training sample
0, 2, 4, 8, 12 and the run consumes 20. The first step of each phase is recomputed outside
DeepSpeed from the checkpoint before it: its loss says which samples it trained on, its gradient
norm that DeepSpeed averaged that step's micro-batches (a stale accumulation count scales it).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pythia_repro.config import load_suite
from pythia_repro.data.batch import TrainingOrder
from pythia_repro.layout import Layout
from pythia_repro.models.build import build_model
from pythia_repro.train.checkpoint import complete_checkpoints
from pythia_repro.train.metrics import read_metrics

pytestmark = pytest.mark.slow

MODEL = "pythia-pico"
RAMP = {"train_iters": 5, "global_batch_size": 8, "micro_batch_size": 2, "segment_steps": 2,
        "batch_ramp": [{"until_step": 2, "global_batch_size": 2}, {"until_step": 4, "global_batch_size": 4}]}


def _states(tag_dir: Path) -> dict[str, torch.Tensor]:
    state = torch.load(tag_dir / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=False)
    optim = torch.load(next(tag_dir.glob("*optim_states.pt")), map_location="cpu", weights_only=False)
    flat = optim["optimizer_state_dict"]
    tensors = {f"module.{k}": v for k, v in state["module"].items()}
    tensors.update({f"optim.{k}": v for k, v in _walk(flat).items()})
    return tensors


def _walk(value, prefix: str = "") -> dict[str, torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return {prefix: value}
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    out = {}
    for key, item in items:
        out.update(_walk(item, f"{prefix}.{key}"))
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_suite, run_cli) -> dict[str, Path]:
    """The uninterrupted run (0 -> 5, crossing both boundaries in one process) and a resumed one
    (0 -> 2, then a second process from the step-2 checkpoint, starting in the 4-sequence phase)."""
    whole = tiny_suite(tmp_path_factory.mktemp("whole"), **RAMP)
    run_cli("train", "--config", str(whole), "--model", MODEL, "--until-step", "5")
    resumed = tiny_suite(tmp_path_factory.mktemp("resumed"), **RAMP)
    run_cli("train", "--config", str(resumed), "--model", MODEL, "--until-step", "2")
    proc = run_cli("train", "--config", str(resumed), "--model", MODEL, "--until-step", "5")
    assert "resumed at step 2" in proc.stderr
    return {"whole": whole, "resumed": resumed}


def test_metrics_and_manifests_count_the_ramps_samples(runs) -> None:
    for config in runs.values():
        layout = Layout(load_suite(config).root)
        rows = read_metrics(layout.metrics(MODEL))
        assert [(r["step"], r["batch_size"], r["samples"]) for r in rows] == [
            (1, 2, 2), (2, 2, 4), (3, 4, 8), (4, 4, 12), (5, 8, 20)]
        ckpts = complete_checkpoints(layout.checkpoints_dir(MODEL))
        assert {step: m["samples_consumed"] for step, m in ckpts.items()} == {0: 0, 1: 2, 2: 4, 4: 12, 5: 20}


def test_resume_inside_the_later_phase_is_bit_identical(runs) -> None:
    whole, resumed = (Layout(load_suite(runs[k]).root) for k in ("whole", "resumed"))
    a, b = _states(whole.checkpoint(MODEL, 5)), _states(resumed.checkpoint(MODEL, 5))
    assert a.keys() == b.keys() and a
    for key in a:
        assert torch.equal(a[key], b[key]), key
    keys = ("loss", "lr", "grad_norm", "batch_size")
    assert [[r[k] for k in keys] for r in read_metrics(whole.metrics(MODEL))] == [
        [r[k] for k in keys] for r in read_metrics(resumed.metrics(MODEL))]


@pytest.mark.parametrize(("checkpoint", "start", "stop"), [(0, 0, 2), (2, 4, 8), (4, 12, 20)])
def test_each_phases_first_step_trains_on_its_samples(runs, checkpoint: int, start: int, stop: int) -> None:
    suite = load_suite(runs["whole"])
    layout, spec = Layout(suite.root), suite.model(MODEL)
    manifest = complete_checkpoints(layout.checkpoints_dir(MODEL))[checkpoint]
    model = build_model(spec.arch, spec.shape, manifest["vocab_size"], suite.seq_length, spec.seed)
    model.load_state_dict(torch.load(layout.checkpoint(MODEL, checkpoint) / "mp_rank_00_model_states.pt",
                                     weights_only=False)["module"])
    order = TrainingOrder(suite.layout.data_prefix(spec.data), suite.train_iters, suite.batch_schedule,
                          suite.seq_length, spec.seed)
    tokens = torch.from_numpy(order.samples(start, stop))
    logits = model(input_ids=tokens[:, :-1]).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), tokens[:, 1:].reshape(-1))
    loss.backward()
    grad_norm = torch.sqrt(sum(p.grad.double().square().sum() for p in model.parameters() if p.grad is not None))
    # Equal micro-batches: the mean of their mean losses is the mean over all their tokens.
    record = read_metrics(layout.metrics(MODEL))[checkpoint]  # the update after the checkpoint
    assert record["step"] == checkpoint + 1
    assert record["loss"] == pytest.approx(loss.item(), rel=1e-5)
    assert record["grad_norm"] == pytest.approx(grad_norm.item(), rel=1e-4)
