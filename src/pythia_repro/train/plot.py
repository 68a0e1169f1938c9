"""The suite's training curves against step, one line per model: loss, learning rate, and tokens
per step (flat for one batch size, stairs for a batch ramp such as PaLM's)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pythia_repro.atomic import atomic_file
from pythia_repro.config import Suite
from pythia_repro.train.metrics import read_metrics


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    head = np.cumsum(values[: window - 1]) / np.arange(1, window)  # no lag-free edge for the first points
    return np.concatenate([head, np.convolve(values, kernel, mode="valid")])


def plot_loss(suite: Suite, output: str | Path) -> Path:
    """Write the loss/lr/batch figure of every model with metrics to `output` (PNG, PDF, ... by suffix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output = Path(output)
    fig, (ax_loss, ax_lr, ax_tokens) = plt.subplots(3, 1, figsize=(8, 8.5), sharex=True, height_ratios=[3, 1, 1])
    plotted = 0
    window = max(1, suite.train_iters // 100)  # one smoothing span for all, interventions included
    for spec in suite.models:
        rows = read_metrics(suite.layout.metrics(spec.name))
        if not rows:
            continue
        steps = np.array([r["step"] for r in rows])
        loss = np.array([r["loss"] for r in rows], dtype=float)
        style = {"linestyle": "--"} if spec.is_intervention else {}
        line, = ax_loss.plot(steps, _smooth(loss, window), label=spec.name, linewidth=1.2, **style)
        ax_lr.plot(steps, [r["lr"] for r in rows], color=line.get_color(), linewidth=1.0, **style)
        # Record s is the update on batch s - 1: its tokens hold over (s - 1, s], hence steps-pre.
        # From the schedule, not the record, so metrics written before `batch_size` existed plot.
        tokens = suite.batch_schedule.batch_size(steps - 1) * suite.seq_length
        ax_tokens.plot(steps, tokens, color=line.get_color(), linewidth=1.0, drawstyle="steps-pre", **style)
        plotted += 1
    ax_loss.set_ylabel("training loss (nats/token, smoothed)")
    schedule = suite.batch_schedule
    if schedule.ramp:
        title = f"{suite.name}: {suite.train_iters} steps of {suite.seq_length}-token sequences, batch {schedule}"
    else:
        title = f"{suite.name}: {suite.train_iters} steps of {suite.global_batch_size} x {suite.seq_length} tokens"
    ax_loss.set_title(title, fontsize=10)
    ax_loss.grid(alpha=0.3)
    if plotted:
        ax_loss.legend(fontsize=8)
    else:
        ax_loss.text(0.5, 0.5, "no metrics yet", ha="center", va="center", transform=ax_loss.transAxes)
    ax_lr.set_ylabel("learning rate")
    ax_lr.grid(alpha=0.3)
    ax_tokens.set_ylabel("tokens per step")
    ax_tokens.set_ylim(bottom=0)  # a constant batch is a flat line above 0, not a full-height band
    ax_tokens.set_xlabel("step")
    ax_tokens.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_file(output, "wb") as fh:
        fig.savefig(fh, format=output.suffix.lstrip(".") or "png", dpi=120)
    plt.close(fig)
    return output
