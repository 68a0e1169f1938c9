"""Learning-rate schedules (`training.lr_schedule`): GPT-NeoX v1.0's exactly, LLaMA's and PaLM's.

neox, GPT-NeoX's `megatron/learning_rates.py: AnnealingLR` (Pythia's schedule):

With E = total iterations (`lr_decay_iters`, else `train_iters`), W = warmup fraction x E (a
float, as GPT-NeoX computes it) and n the scheduler's iteration count:

    warmup (W > 0 and n <= W):  lr = lr0 * min(n, E - W) / W
    cosine otherwise:           lr = max(lr0 / 2 * (cos(pi * (min(n, E - W) - W) / E) + 1), min_lr)

Two quirks are Pythia's and kept on purpose: the cosine runs over E, not E - W, so it never
reaches zero on its own (min_lr floors it, near step 115k of 143k for Pythia), and the warmup
value is not floored. GPT-NeoX builds the scheduler at n = 0 and DeepSpeed steps it after every
applied optimizer step (not after an fp16 overflow skip), so update t (0-based) uses lr(t): the
very first update runs at lr 0.

llama (Touvron et al. 2023, Section 2.3): the same linear warmup over W steps, then a cosine
over the remaining E - W steps from lr0 down to min_lr (LLaMA: 10% of the peak), reached at E:

    warmup (n <= W):  lr = lr0 * n / W
    cosine:           lr = min_lr + (lr0 - min_lr) / 2 * (cos(pi * min(n - W, E - W) / (E - W)) + 1)

palm (Chowdhery et al. 2022, Section 5): no warmup, lr0 for the first C steps, then 1/sqrt(step):

    lr = lr0 * sqrt(C / max(n, C))

(PaLM: lr0 = 1e-2, C = 10,000; it has no floor, and its size rows set min_lr = 0). Every style
is floored at min_lr and runs in the same scheduler object, so checkpoint and resume are alike.
"""

from __future__ import annotations

import math

from pythia_repro.errors import PythiaReproError

DECAY_STYLES = ("cosine", "linear", "exponential", "constant")
LR_SCHEDULES = ("neox", "llama", "palm")


def annealing_lr(
    n: int,
    lr: float,
    min_lr: float,
    warmup_iters: float,
    total_iters: int,
    decay_style: str = "cosine",
) -> float:
    """The learning rate GPT-NeoX's AnnealingLR sets after its iteration count became `n`."""
    if total_iters <= 0:
        raise PythiaReproError(f"total_iters must be positive, got {total_iters}")
    capped = min(n, total_iters - warmup_iters)
    if warmup_iters > 0 and n <= warmup_iters:
        return float(lr) * capped / warmup_iters
    decayed = capped - warmup_iters
    if decay_style == "cosine":
        value = lr / 2.0 * (math.cos(math.pi * decayed / total_iters) + 1)
    elif decay_style == "linear":
        value = lr * (total_iters - decayed) / total_iters
    elif decay_style == "exponential":
        value = lr * math.exp(-0.693 * decayed / total_iters)
    elif decay_style == "constant":
        value = lr
    else:
        raise PythiaReproError(f"unknown decay style {decay_style!r}; choose one of {DECAY_STYLES}")
    return max(value, min_lr)


def llama_lr(n: int, lr: float, min_lr: float, warmup_iters: float, total_iters: int) -> float:
    """LLaMA's schedule: linear warmup, then cosine to `min_lr` at `total_iters`."""
    if warmup_iters > 0 and n <= warmup_iters:
        return float(lr) * n / warmup_iters
    span = max(total_iters - warmup_iters, 1)  # a warmup as long as the run leaves one step to decay
    progress = min(n - warmup_iters, span) / span
    return min_lr + (lr - min_lr) / 2.0 * (math.cos(math.pi * progress) + 1)


def palm_lr(n: int, lr: float, min_lr: float, constant_iters: int) -> float:
    """PaLM's schedule: `lr` for `constant_iters` steps, then decaying as 1/sqrt(step)."""
    return max(float(lr) * math.sqrt(constant_iters / max(n, constant_iters)), min_lr)


def scheduled_lr(n: int, style: str, lr: float, min_lr: float, warmup_iters: float, total_iters: int,
                 decay_style: str = "cosine", constant_iters: int = 0) -> float:
    """The learning rate of schedule `style` (one of LR_SCHEDULES) at iteration count `n`."""
    if style == "neox":
        return annealing_lr(n, lr, min_lr, warmup_iters, total_iters, decay_style)
    if style == "llama":
        return llama_lr(n, lr, min_lr, warmup_iters, total_iters)
    if style == "palm":
        return palm_lr(n, lr, min_lr, constant_iters)
    raise PythiaReproError(f"training.lr_schedule: unknown schedule {style!r}; choose one of {LR_SCHEDULES}")


class AnnealingLR:
    """Sets every param group's lr from `scheduled_lr`; DeepSpeed steps it and checkpoints its state.

    Deliberately not callable: DeepSpeed treats a callable `lr_scheduler` as a factory.
    """

    def __init__(
        self,
        optimizer,
        lr: float,
        min_lr: float,
        warmup_iters: float,
        total_iters: int,
        decay_style: str = "cosine",
        last_iter: int = 0,
        style: str = "neox",
        constant_iters: int = 0,
    ) -> None:
        self.optimizer = optimizer
        self.lr, self.min_lr = lr, min_lr
        self.warmup_iters, self.total_iters, self.decay_style = warmup_iters, total_iters, decay_style
        self.style, self.constant_iters = style, constant_iters
        self.num_iters = last_iter
        self.step(last_iter)

    def get_lr(self) -> float:
        return scheduled_lr(self.num_iters, self.style, self.lr, self.min_lr, self.warmup_iters, self.total_iters,
                            self.decay_style, self.constant_iters)

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def step(self, step_num: int | None = None, **_: object) -> None:
        self.num_iters = self.num_iters + 1 if step_num is None else step_num
        lr = self.get_lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def state_dict(self) -> dict:
        return {"start_lr": self.lr, "min_lr": self.min_lr, "warmup_iter": self.warmup_iters,
                "end_iter": self.total_iters, "decay_style": self.decay_style, "num_iters": self.num_iters,
                "style": self.style, "constant_iter": self.constant_iters}

    def load_state_dict(self, state: dict) -> None:
        # GPT-NeoX's default (use_checkpoint_lr_scheduler): the checkpoint's schedule wins.
        self.lr, self.min_lr = state["start_lr"], state["min_lr"]
        self.warmup_iters, self.total_iters = state["warmup_iter"], state["end_iter"]
        self.decay_style = state["decay_style"]
        # Checkpoints saved before lr_schedule existed hold GPT-NeoX's schedule, which has neither key.
        self.style, self.constant_iters = state.get("style", "neox"), state.get("constant_iter", 0)
        self.step(state["num_iters"])


def schedule_for(training, shape) -> dict:
    """AnnealingLR's arguments for a suite's `training` section (TrainingSection) and a model Shape.

    Warmup is `training.warmup_steps` when given (LLaMA: 2,000), else GPT-NeoX's float
    `warmup_fraction` x train_iters; the palm style has none and holds `lr_constant_steps`."""
    total = max(1, training.train_iters)
    warmup = training.warmup_steps if training.warmup_steps is not None else training.warmup_fraction * total
    return dict(lr=shape.lr, min_lr=shape.min_lr, warmup_iters=warmup, total_iters=total, decay_style="cosine",
                style=training.lr_schedule, constant_iters=training.lr_constant_steps)
