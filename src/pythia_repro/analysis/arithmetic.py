"""Pythia's arithmetic term-frequency evaluation as our own lm-eval tasks, and its analysis.

Tasks (EleutherAI/pythia `case-studies/term_frequency/task.py`): `Q:What is {x1} plus {x2}? A:`
and `Q:What is {x1} times {x2}? A:`, x1 in 0..99, x2 in 1..50, k demonstrations drawn from the
other x1 values (their "validation" split holds every x1 but the query's), each demonstration
written as prompt + answer with no space between, examples joined by "\\n\\n"; greedy generation
until "\\n"; correct when the first `\\d{1,5}` of the generation equals the answer.

The demonstrations are built into each document's text (deterministic from a seed) so one task
per (operation, k) runs with num_fewshot 0, and the docs keep x1, x2 and the answer so the
accuracy per x1 comes from lm-eval's logged samples. The analysis relates that accuracy to the
count of str(x1) in the training data seen up to each checkpoint (`term_frequency.merge_parts`)
and reports Δ = accuracy(10 most frequent x1) - accuracy(10 least frequent), with a 95% CI.
"""

from __future__ import annotations

import io
import json
import math
import random
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pythia_repro.atomic import atomic_file, write_json, write_text

OPS = {"plus": lambda a, b: a + b, "times": lambda a, b: a * b}
FULL_X1 = tuple(range(100))
FULL_X2 = tuple(range(1, 51))
FILTER = "first_number"
TAG = "arithmetic_term_frequency"

_YAML = """\
# Pythia's arithmetic term-frequency prompts ({op}, {k}-shot, demonstrations built into `prompt`).
# Written by pythia_repro.analysis.arithmetic; read with TaskManager(include_path=this directory).
task: {task}
tag:
  - {tag}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data_file}
  cache_dir: {cache_dir}
output_type: generate_until
test_split: test
doc_to_text: prompt
doc_to_target: target
generation_kwargs:
  until:
    - "\\n"
  max_gen_toks: 16
  do_sample: false
num_fewshot: 0
filter_list:
  - name: {filter}
    filter:
      - function: regex
        regex_pattern: "\\\\d{{1,5}}"
        group_select: 0
        fallback: "[none]"
      - function: take_first
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def task_name(op: str, k: int) -> str:
    return f"arithmetic_{op}_{k}shot"


def question(op: str, x1: int, x2: int) -> str:
    return f"Q:What is {x1} {op} {x2}? A:"


def _documents(op: str, k: int, x1_values: Sequence[int], x2_of: dict[int, list[int]], seed: int) -> list[dict]:
    answer = OPS[op]
    docs = []
    for x1 in x1_values:
        # Pythia drew demonstrations from every (x1', x2) with x1' != x1 over the full grid.
        pool = [(a, b) for a in FULL_X1 if a != x1 for b in FULL_X2]
        for x2 in x2_of[x1]:
            rng = random.Random(f"{seed}:{op}:{k}:{x1}:{x2}")  # str seeds hash stably across runs
            demos = rng.sample(pool, k)
            parts = [question(op, a, b) + str(answer(a, b)) for a, b in demos]
            y = answer(x1, x2)
            docs.append({"prompt": "\n\n".join([*parts, question(op, x1, x2)]), "target": str(y), "op": op,
                         "k": k, "x1": x1, "x2": x2, "answer": y, "demo_x1": [a for a, _ in demos]})
    return docs


def write_arithmetic_tasks(
    out_dir: str | Path,
    ops: Sequence[str] = ("plus", "times"),
    shots: Sequence[int] = (0, 4),
    x1_values: Sequence[int] = FULL_X1,
    x2_values: Sequence[int] = FULL_X2,
    x2_per_x1: int | None = None,
    seed: int = 1234,
    *,
    data_dir: str | Path | None = None,
) -> dict:
    """Write one YAML + JSONL per (op, k) into `out_dir`; returns {"tasks": [...], per task info}.

    Each x1 gets every x2 in `x2_values`, or `x2_per_x1` of them drawn from it (seeded), so a small
    suite can afford every x1. `data_dir`: the directory the YAMLs should point at when `out_dir`
    is a temporary that will be renamed (the `atomic_dir` pattern); default `out_dir`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data_dir = Path(data_dir or out_dir).resolve()
    unknown = [op for op in ops if op not in OPS]
    if unknown:
        raise ValueError(f"arithmetic ops {unknown} unknown; choose from {sorted(OPS)}")
    bad = [x for x in x1_values if x not in FULL_X1] + [x for x in x2_values if x not in FULL_X2]
    if bad:
        raise ValueError(f"arithmetic values {bad} outside x1 in 0..99, x2 in 1..50")
    if x2_per_x1 is not None and not 1 <= x2_per_x1 <= len(x2_values):
        raise ValueError(f"x2_per_x1 = {x2_per_x1}: must be in 1..{len(x2_values)}")
    x2_of = {x1: (sorted(random.Random(f"{seed}:x2:{x1}").sample(list(x2_values), x2_per_x1))
                  if x2_per_x1 is not None else list(x2_values)) for x1 in x1_values}
    info: dict = {"tasks": [], "seed": seed, "x1_values": list(x1_values), "x2": {str(k): v for k, v in x2_of.items()}}
    for op in ops:
        for k in shots:
            name = task_name(op, k)
            docs = _documents(op, int(k), list(x1_values), x2_of, seed)
            write_text(out_dir / f"{name}.jsonl", "".join(json.dumps(d) + "\n" for d in docs))
            write_text(out_dir / f"{name}.yaml", _YAML.format(
                op=op, k=k, task=name, tag=TAG, filter=FILTER,
                data_file=json.dumps(str(data_dir / f"{name}.jsonl")),
                cache_dir=json.dumps(str(data_dir / ".hf-datasets-cache"))))
            info["tasks"].append(name)
            info[name] = {"op": op, "k": int(k), "documents": len(docs)}
    write_json(out_dir / "arithmetic_tasks.json", info)
    return info


def per_x1_accuracy(samples: Iterable[tuple[str, dict]], filter_name: str = FILTER) -> pd.DataFrame:
    """Accuracy per (task, op, k, x1) from lm-eval logged samples (`results["samples"][task]`).

    Only the samples of `filter_name` count (lm-eval logs one per document and filter).
    """
    rows = []
    for task, sample in samples:
        if sample.get("filter", filter_name) != filter_name:
            continue
        doc = sample["doc"]
        rows.append((task, doc["op"], int(doc["k"]), int(doc["x1"]), float(sample["exact_match"])))
    frame = pd.DataFrame(rows, columns=["task", "op", "k", "x1", "correct"])
    out = (frame.groupby(["task", "op", "k", "x1"], as_index=False)
           .agg(n=("correct", "size"), correct=("correct", "sum")))
    out["n"] = out["n"].astype("int64")
    out["correct"] = out["correct"].round().astype("int64")
    out["accuracy"] = out["correct"] / out["n"]
    return out


# ---------------------------------------------------------------------------------------------
# Δ and figures

TOP = 10
Z95 = 1.959963984540054


def wilson_interval(correct: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion correct/n (nan, nan when n = 0)."""
    if n == 0:
        return (math.nan, math.nan)
    p = correct / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    return centre - half, centre + half


def delta_stats(top: tuple[int, int], bottom: tuple[int, int]) -> dict:
    """Δ = p_top - p_bottom over Bernoulli outcomes (correct, n) of all docs of each group.

    `se` is the Wald standard error of a difference of two means; the 95% interval is Newcombe's
    hybrid score interval (Wilson per group), which stays honest at 0% or 100% accuracy, where the
    Wald interval collapses to a point (a tiny model's all-wrong null would look certain).
    """
    (c1, n1), (c2, n2) = top, bottom
    p1, p2 = c1 / n1, c2 / n2
    l1, u1 = wilson_interval(c1, n1)
    l2, u2 = wilson_interval(c2, n2)
    d = p1 - p2
    return {"acc_top": p1, "acc_bottom": p2, "delta": d,
            "se": math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2),
            "ci_low": d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
            "ci_high": d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)}


def _frequencies(counts: pd.DataFrame, step: int, x1_values: Iterable[int], source: str) -> pd.Series:
    steps = counts.attrs.get("steps") or sorted(counts["step"].unique().tolist())
    if step not in steps:
        raise ValueError(f"{source}: no term counts at step {step} (it has steps {steps})")
    at = counts[counts["step"] == step].set_index("term")["count"]
    return pd.Series({x1: int(at.get(str(x1), 0)) for x1 in x1_values}, dtype="int64")


def delta_table(counts_by_data: dict[str, pd.DataFrame], accuracy: pd.DataFrame, model_meta: dict) -> pd.DataFrame:
    """Δ per (model, op, k, step), with the frequency of each x1 taken at that step.

    Ties in frequency are broken by x1 (deterministic); `separated` is False when the top and
    bottom groups share a frequency (e.g. at step 0, where every count is 0), and Δ then means little.
    """
    rows = []
    for (model, op, k, step), group in accuracy.groupby(["model", "op", "k", "step"]):
        data = model_meta[model]["data"]
        freq = _frequencies(counts_by_data[data], int(step), group["x1"], f"counts[{data!r}]")
        g = group.assign(freq=group["x1"].map(freq)).sort_values(["freq", "x1"])
        m = min(TOP, len(g) // 2)
        if m == 0:
            continue
        bottom, top = g.head(m), g.tail(m)
        stats = delta_stats((int(top["correct"].sum()), int(top["n"].sum())),
                            (int(bottom["correct"].sum()), int(bottom["n"].sum())))
        rows.append({"model": model, "data": data, "op": op, "k": int(k), "step": int(step), "groups": m,
                     "n_top": int(top["n"].sum()), "n_bottom": int(bottom["n"].sum()),
                     "freq_top_min": int(top["freq"].min()), "freq_bottom_max": int(bottom["freq"].max()),
                     "separated": bool(top["freq"].min() > bottom["freq"].max()), **stats,
                     "excludes_zero": bool(stats["ci_low"] > 0 or stats["ci_high"] < 0)})
    return pd.DataFrame(rows)


def save_figure(fig, path: Path) -> None:
    """PNG at `path`, written atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    with atomic_file(path, "wb") as fh:
        fh.write(buf.getvalue())


def model_label(model: str, meta: dict) -> str:
    """A model's legend label: its metadata's "label", else its name."""
    return meta.get("label", model)


def _plot_accuracy_vs_frequency(frame: pd.DataFrame, model_meta: dict, op: str, k: int, suite: str, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted(frame["model"].unique(), key=lambda m: (model_meta[m].get("params", 0), m))
    fig, axes = plt.subplots(1, len(models), figsize=(4.5 * len(models), 4), squeeze=False, sharey=True)
    positive = frame["freq"][frame["freq"] > 0]
    lo, hi = (positive.min(), positive.max()) if len(positive) else (1, 10)
    # log bins over the observed range, as Pythia's np.logspace bins over the Pile's
    edges = np.logspace(np.log10(lo), np.log10(hi) + 1e-9, 11) if hi > lo else np.array([lo * 0.9, hi * 1.1])
    for ax, model in zip(axes[0], models, strict=True):
        sub = frame[frame["model"] == model]
        for step, g in sub.groupby("step"):
            g = g[g["freq"] > 0]
            if g.empty:
                continue
            b = np.clip(np.digitize(g["freq"], edges) - 1, 0, len(edges) - 2)
            agg = g.assign(bin=b).groupby("bin").agg(correct=("correct", "sum"), n=("n", "sum"))
            centres = np.sqrt(edges[agg.index] * edges[agg.index + 1])
            ax.plot(centres, agg["correct"] / agg["n"], marker="o", label=f"step {step}")
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("count of x1 in the training data seen (log bins)")
        ax.set_title(model_label(model, model_meta[model]))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy")
    axes[0][-1].legend(title="checkpoint", fontsize=8)
    zero = int((frame["freq"] == 0).sum())
    note = f" ({zero} x1 x step points with count 0 not shown)" if zero else ""
    fig.suptitle(f"{suite}: accuracy vs frequency of x1, {op}, {k}-shot{note}")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def plot_delta_lines(ax, delta: pd.DataFrame, model_meta: dict) -> None:
    """Δ (points) with its interval over steps, a line per model (smallest first), on `ax`."""
    for model, g in sorted(delta.groupby("model"), key=lambda mg: (model_meta[mg[0]].get("params", 0), mg[0])):
        g = g.sort_values("step")
        yerr = np.vstack([g["delta"] - g["ci_low"], g["ci_high"] - g["delta"]]) * 100
        ax.errorbar(g["step"], g["delta"] * 100, yerr=yerr, marker="o", capsize=3,
                    label=model_label(model, model_meta[model]))
    ax.axhline(0, color="grey", lw=1, ls="--")
    ax.set_xlabel("training step")


def _plot_delta(delta: pd.DataFrame, model_meta: dict, op: str, k: int, suite: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    plot_delta_lines(ax, delta, model_meta)
    ax.set_ylabel("Δ accuracy, top-10 minus bottom-10 x1 (points)")
    ax.set_title(f"{suite}: Δ (95% Newcombe CI), {op}, {k}-shot")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def term_frequency_report(
    counts_parquet_by_data: dict[str, str | Path],
    accuracy_frame: pd.DataFrame,
    model_meta: dict[str, dict],
    out_dir: str | Path,
    *,
    suite: str = "suite",
) -> dict:
    """Write delta.csv, summary.json and the figures into `out_dir`; returns the summary.

    `counts_parquet_by_data`: {data name: cumulative counts Parquet (`write_counts`)};
    `accuracy_frame`: `per_x1_accuracy` rows plus `model` and `step` columns;
    `model_meta`: {model: {"data": data name, optional "label", "params"}}.
    """
    from pythia_repro.analysis.term_frequency import read_counts

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    missing = {m for m in accuracy_frame["model"].unique() if m not in model_meta}
    if missing:
        raise ValueError(f"term_frequency_report: no model_meta for {sorted(missing)}")
    counts = {d: read_counts(p) for d, p in counts_parquet_by_data.items()}
    unknown = {model_meta[m]["data"] for m in accuracy_frame["model"].unique()} - set(counts)
    if unknown:
        raise ValueError(f"term_frequency_report: no term counts for data {sorted(unknown)}")
    delta = delta_table(counts, accuracy_frame, model_meta)
    with atomic_file(out_dir / "delta.csv", "w") as fh:
        delta.to_csv(fh, index=False)

    with_freq = []
    for (model, step), g in accuracy_frame.groupby(["model", "step"]):
        data = model_meta[model]["data"]
        freq = _frequencies(counts[data], int(step), g["x1"], f"counts[{data!r}]")
        with_freq.append(g.assign(freq=g["x1"].map(freq).astype("int64")))
    frame = pd.concat(with_freq, ignore_index=True)
    figures = []
    for (op, k), g in frame.groupby(["op", "k"]):
        path = out_dir / f"accuracy_vs_frequency_{op}_{k}shot.png"
        _plot_accuracy_vs_frequency(g, model_meta, op, int(k), suite, path)
        figures.append(path.name)
        d = delta[(delta["op"] == op) & (delta["k"] == k)]
        if not d.empty:
            path = out_dir / f"delta_{op}_{k}shot.png"
            _plot_delta(d, model_meta, op, int(k), suite, path)
            figures.append(path.name)

    final = []
    for (model, op, k), g in delta.groupby(["model", "op", "k"]):
        last = g.sort_values("step").iloc[-1]
        verdict = ("gap (CI excludes 0)" if last["excludes_zero"] else "null (CI includes 0)")
        final.append({"model": model, "op": op, "k": int(k), "step": int(last["step"]),
                      "delta": float(last["delta"]), "ci95": [float(last["ci_low"]), float(last["ci_high"])],
                      "n_top": int(last["n_top"]), "n_bottom": int(last["n_bottom"]),
                      "separated": bool(last["separated"]), "verdict": verdict})
    summary = {"suite": suite, "top_bottom": TOP, "ci": "95% Newcombe hybrid score interval",
               "final_step": final, "files": ["delta.csv", *figures]}
    write_json(out_dir / "summary.json", summary)
    return summary
