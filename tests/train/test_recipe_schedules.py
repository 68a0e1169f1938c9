"""LLaMA's and PaLM's recipes in the trainer: their LR schedules and PaLM's z-loss, by hand."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from pythia_repro.config import ConfigError, load_suite
from pythia_repro.errors import PythiaReproError
from pythia_repro.models.sizes import SIZES
from pythia_repro.train.schedule import AnnealingLR, llama_lr, palm_lr, schedule_for, scheduled_lr
from pythia_repro.train.trainer import lm_loss, train_step

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"

# LLaMA-7B: peak 3e-4, floor 3e-5, 2,000 warmup steps; 1T tokens of 4M is 250,000 steps.
LLAMA_7B = dict(lr=3e-4, min_lr=3e-5, warmup_iters=2000, total_iters=250000)


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, 0.0),  # the first update runs at lr 0, as GPT-NeoX's warmup
        (1000, 1.5e-4),  # halfway through warmup
        (2000, 3e-4),  # the peak at the end of warmup
        (2000 + 62000, 3e-5 + 1.35e-4 * (math.sqrt(0.5) + 1)),  # a quarter of the cosine: cos(pi/4)
        (2000 + 124000, 1.65e-4),  # halfway: the mean of peak and floor
        (250000, 3e-5),  # the floor, reached exactly at train_iters (10% of the peak)
        (300000, 3e-5),
    ],
)
def test_llama_schedule_by_hand(n: int, expected: float) -> None:
    assert llama_lr(n, **LLAMA_7B) == pytest.approx(expected, rel=1e-12, abs=1e-20)
    assert scheduled_lr(n, "llama", **LLAMA_7B) == llama_lr(n, **LLAMA_7B)


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, 1e-2),  # no warmup
        (5000, 1e-2),
        (10000, 1e-2),  # the constant phase ends at 10k ...
        (40000, 5e-3),  # ... then 1e-2 sqrt(10k / n)
        (250000, 2e-3),
        (1000000, 1e-3),
    ],
)
def test_palm_schedule_by_hand(n: int, expected: float) -> None:
    assert palm_lr(n, lr=1e-2, min_lr=0.0, constant_iters=10000) == pytest.approx(expected, rel=1e-12)


def test_palm_schedule_floors_at_min_lr_and_unknown_styles_fail() -> None:
    assert palm_lr(40000, lr=1e-2, min_lr=6e-3, constant_iters=10000) == 6e-3
    with pytest.raises(PythiaReproError, match="training.lr_schedule"):
        scheduled_lr(1, "t5", lr=1e-3, min_lr=0.0, warmup_iters=0, total_iters=10)


def training(**changes) -> SimpleNamespace:
    base = dict(train_iters=100, warmup_fraction=0.01, warmup_steps=None, lr_schedule="neox", lr_constant_steps=10)
    return SimpleNamespace(**{**base, **changes})


def test_schedule_for_takes_warmup_steps_over_the_fraction() -> None:
    shape = SIZES["llama-tiny"]
    assert schedule_for(training(), shape)["warmup_iters"] == pytest.approx(1.0)  # 0.01 x 100
    args = schedule_for(training(lr_schedule="llama", warmup_steps=20), shape)
    assert args["warmup_iters"] == 20 and args["style"] == "llama"
    assert (args["lr"], args["min_lr"], args["total_iters"]) == (1e-3, 1e-4, 100)


@pytest.mark.parametrize("style", ["llama", "palm"])
def test_scheduler_resumes_exactly(style: str) -> None:
    """A scheduler restored from a state_dict continues on the very same rates (DeepSpeed saves it)."""
    args = schedule_for(training(lr_schedule=style, warmup_steps=5, train_iters=40, lr_constant_steps=8),
                        SIZES["palm-tiny"] if style == "palm" else SIZES["llama-tiny"])

    def rates(sched: AnnealingLR, steps: int) -> list[float]:
        out = []
        for _ in range(steps):
            out.append(sched.optimizer.param_groups[0]["lr"])
            sched.step()
        return out

    straight = rates(AnnealingLR(torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))]), **args), 40)
    first = AnnealingLR(torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))]), **args)
    head = rates(first, 17)
    # The resumed run is built from the config as at step 0, then loads the checkpoint's state.
    second = AnnealingLR(torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))]), **args)
    second.load_state_dict(first.state_dict())
    assert head + rates(second, 23) == straight
    assert straight == [scheduled_lr(n, **args) for n in range(40)]


def test_checkpoints_without_a_style_resume_as_gpt_neox() -> None:
    args = dict(lr=6e-4, min_lr=6e-5, warmup_iters=2.0, total_iters=20)
    old = AnnealingLR(torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))]), **args)
    for _ in range(7):
        old.step()
    state = {k: v for k, v in old.state_dict().items() if k not in ("style", "constant_iter")}
    new = AnnealingLR(torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))]), **args, style="palm",
                      constant_iters=3)
    new.load_state_dict(state)
    assert new.style == "neox" and new.get_last_lr() == old.get_last_lr()


def test_recipe_options_in_the_config() -> None:
    cfg = yaml.safe_load(TINY.read_text())
    assert load_suite(cfg).training.lr_schedule == "neox"  # the default: Pythia's schedule, unchanged
    assert load_suite(cfg).training.z_loss == 0.0 and load_suite(cfg).training.warmup_steps is None
    cfg["training"].update(lr_schedule="palm", lr_constant_steps=20, z_loss=1e-4, warmup_steps=0)
    t = load_suite(cfg).training
    assert (t.lr_schedule, t.lr_constant_steps, t.z_loss, t.warmup_steps) == ("palm", 20, 1e-4, 0)
    cfg["training"]["lr_schedule"] = "cosine"
    with pytest.raises(ConfigError, match="training.lr_schedule: 'cosine' is not one of"):
        load_suite(cfg)


# ----- PaLM's z-loss -------------------------------------------------------------------------------
# Two tokens over a vocabulary of 2: logits [0, 0] (Z = 2) and [ln 3, 0] (Z = 4), both labelled 0.
LOGITS = torch.tensor([[[0.0, 0.0], [math.log(3), 0.0]]])
LABELS = torch.tensor([[0, 0]])
LN2 = math.log(2)


def test_z_loss_by_hand() -> None:
    cross_entropy = (LN2 + (2 * LN2 - math.log(3))) / 2  # -log softmax of label 0: ln Z - logit
    mean_log_z_sq = (LN2**2 + (2 * LN2) ** 2) / 2
    objective, logged = lm_loss(LOGITS, LABELS, 1e-4)
    assert logged.item() == pytest.approx(cross_entropy, rel=1e-6)
    assert objective.item() == pytest.approx(cross_entropy + 1e-4 * mean_log_z_sq, rel=1e-6)
    off, off_logged = lm_loss(LOGITS, LABELS, 0.0)
    assert off is off_logged and off.item() == pytest.approx(cross_entropy, rel=1e-6)


def test_z_loss_gradient_by_hand() -> None:
    # d/dlogits of z mean(log² Z) over 2 tokens is z / 2 x 2 ln Z x softmax: token 0 gets
    # 1e-4 x ln 2 x [1/2, 1/2]; the cross-entropy adds (softmax - onehot) / 2 = [-1/4, 1/4].
    logits = LOGITS.clone().requires_grad_(True)
    objective, _ = lm_loss(logits, LABELS, 1e-4)
    objective.backward()
    expected = torch.tensor([-0.25 + 0.5e-4 * LN2, 0.25 + 0.5e-4 * LN2])
    # float32 to 1e-7; the z term itself is 3.5e-5.
    assert torch.allclose(logits.grad[0, 0], expected, rtol=0, atol=1e-7)


class _Engine:
    """DeepSpeed's engine as train_step uses it: the accumulation boundary, call, backward, step."""

    def __init__(self) -> None:
        self.logits = LOGITS.clone().requires_grad_(True)
        self.steps = 0
        self.boundaries: list[bool] = []

    def set_gradient_accumulation_boundary(self, is_boundary: bool) -> None:
        self.boundaries.append(is_boundary)

    def __call__(self, input_ids: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(logits=self.logits * 1.0)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> None:
        self.steps += 1


def test_train_step_backpropagates_the_z_loss_and_reports_the_cross_entropy() -> None:
    engine = _Engine()
    logged = train_step(engine, [(torch.zeros(1, 2, dtype=torch.long), LABELS)], z_loss=1e-4)
    assert logged.item() == pytest.approx((3 * LN2 - math.log(3)) / 2, rel=1e-6)
    assert engine.logits.grad[0, 0, 0].item() == pytest.approx(-0.25 + 0.5e-4 * LN2, abs=1e-7)
    assert engine.boundaries == [True]  # the update comes with the step's only micro-batch
