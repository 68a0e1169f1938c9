"""The suite's training curves: loss (and learning rate) against step, one line per model."""

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
    """Write the loss/lr figure of every model with metrics to `output` (PNG, PDF, ... by suffix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output = Path(output)
    fig, (ax_loss, ax_lr) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, height_ratios=[3, 1])
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
        plotted += 1
    ax_loss.set_ylabel("training loss (nats/token, smoothed)")
    ax_loss.set_title(f"{suite.name}: {suite.train_iters} steps of {suite.global_batch_size} x {suite.seq_length}"
                      " tokens")
    ax_loss.grid(alpha=0.3)
    if plotted:
        ax_loss.legend(fontsize=8)
    else:
        ax_loss.text(0.5, 0.5, "no metrics yet", ha="center", va="center", transform=ax_loss.transAxes)
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("step")
    ax_lr.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_file(output, "wb") as fh:
        fig.savefig(fh, format=output.suffix.lstrip(".") or "png", dpi=120)
    plt.close(fig)
    return output
