"""Pythia's published evaluation results, as a reference for ours.

`reference/pythia_evals.csv` (package data) is EleutherAI/pythia's `evals/pythia-v1/` records
(lm-eval v0.3 JSONs, one per model, step and shot count) flattened to one row per
(model, step, task, num_fewshot, metric): the 16 models (pythia-{70m..12b}[-deduped]; the
standard 1b is the repo's `pythia-1b-bf16`), 27 zero-shot and 15 five-shot steps, the paper's
tasks (lambada_openai, piqa, winogrande, wsc, arc_easy, arc_challenge, sciq, logiqa). Its first
line names the source commit; bench/make_pythia_reference.py rebuilds it from a clone.

Metric names: lm-eval v0.3 called LAMBADA's perplexity `ppl`; ours (0.4) call it `perplexity`.
`load_reference()` renames to ours, so both tables join on the same keys.
"""

from __future__ import annotations

import math
from importlib import resources

from pythia_repro.errors import PythiaReproError
from pythia_repro.evaluate.benchmarks import stock_name

REFERENCE_FILE = "reference/pythia_evals.csv"
COLUMNS = ["model", "step", "task", "num_fewshot", "metric", "value", "stderr"]
V03_METRICS = {"ppl": "perplexity"}
KEYS = ["model", "step", "task", "num_fewshot", "metric"]
FINAL_STEP = 143000


def load_reference():
    """The published numbers as a DataFrame with COLUMNS (metric names as lm-eval 0.4 writes them)."""
    import pandas as pd

    with resources.files("pythia_repro.evaluate").joinpath(REFERENCE_FILE).open("r") as fh:
        frame = pd.read_csv(fh, comment="#")
    if list(frame.columns) != COLUMNS:
        raise PythiaReproError(f"{REFERENCE_FILE}: columns {list(frame.columns)}, expected {COLUMNS}")
    frame["metric"] = frame["metric"].replace(V03_METRICS)
    return frame


def reference_source() -> str:
    """The CSV's provenance line (repository, path, commit, date)."""
    with resources.files("pythia_repro.evaluate").joinpath(REFERENCE_FILE).open("r") as fh:
        return fh.readline().lstrip("# ").rstrip("\n")


def _comparable(ours, reference):
    """Our tidy table keyed like the reference: offline tasks under the stock name they stand for."""
    frame = ours.copy()
    frame["task"] = frame["task"].map(stock_name)
    frame["metric"] = frame["metric"].replace(V03_METRICS)
    # Pythia's runs are named like ours (`pythia-160m`, `pythia-160m-deduped`); a suite whose
    # model names differ is matched on size + dataset instead.
    if "size" in frame.columns and "dataset" in frame.columns:
        known = set(reference["model"].unique())
        by_size = "pythia-" + frame["size"].astype(str) + frame["dataset"].map(
            lambda d: "-deduped" if d == "deduped" else "")
        frame["model"] = frame["model"].where(frame["model"].isin(known), by_size)
    return frame


def matching(ours, reference=None):
    """Our rows with Pythia's value/stderr beside them (`value_ref`, `stderr_ref`), inner-joined on
    model, step, task, num_fewshot and metric. `ours` is aggregate.collect()'s table."""
    reference = load_reference() if reference is None else reference.assign(
        metric=reference["metric"].replace(V03_METRICS))
    mine = _comparable(ours, reference)
    ref = reference[KEYS + ["value", "stderr"]].rename(columns={"value": "value_ref", "stderr": "stderr_ref"})
    mine = mine.astype({"step": "int64", "num_fewshot": "int64"})
    ref = ref.astype({"step": "int64", "num_fewshot": "int64"})
    return mine.merge(ref, on=KEYS, how="inner")


def parity_table(ours, reference=None, step: int | None = None):
    """Per (model, task, num_fewshot, metric): ours, Pythia's, the difference and
    z = (ours - theirs) / sqrt(se_ours^2 + se_theirs^2), at `step` (default: the last step both have
    per model). |z| > 2 flags a gap that sampling noise does not explain."""
    import pandas as pd

    joined = matching(ours, reference)
    if joined.empty:
        return pd.DataFrame(columns=["model", "task", "num_fewshot", "metric", "step", "value", "value_ref",
                                     "diff", "z"])
    if step is None:
        last = joined.groupby("model")["step"].transform("max")
        joined = joined[joined["step"] == last]
    else:
        joined = joined[joined["step"] == step]
    out = joined[["model", "task", "num_fewshot", "metric", "step", "value", "stderr", "value_ref",
                  "stderr_ref"]].copy()
    out["diff"] = out["value"] - out["value_ref"]
    se = (out["stderr"].fillna(0.0) ** 2 + out["stderr_ref"].fillna(0.0) ** 2) ** 0.5
    out["z"] = [d / s if s > 0 else math.nan for d, s in zip(out["diff"], se, strict=True)]
    return out.sort_values(["model", "task", "num_fewshot", "metric"]).reset_index(drop=True)


def overlay(ax, reference_rows, *, label: str = "Pythia (published)", errorbars: bool = False) -> None:
    """Draw reference rows (one model, task, shot count, metric) on an evaluation axis: value over
    step as a black dashed line with markers, like aggregate.plot_figures' lines."""
    if reference_rows is None or len(reference_rows) == 0:
        return
    rows = reference_rows.sort_values("step")
    ax.plot(rows["step"], rows["value"], linestyle="--", color="black", marker="x", markersize=3, linewidth=1.0,
            label=label)
    if errorbars:
        ax.errorbar(rows["step"], rows["value"], yerr=rows["stderr"].fillna(0.0), fmt="none", ecolor="black",
                    elinewidth=0.6, alpha=0.6)
