"""The Pythia paper's figures of a suite, from the stage outputs (tables and summaries), as PNG and PDF.

`paper_figures(suite)` names, per paper section, the figures the suite has data for; it needs only
the config, so the workflow knows its outputs when it builds the DAG. A case study that is off
(`steps: []`, `enabled: false`) has no section here, so its figures drop out rather than failing.
`write_section(suite, section, inputs...)` draws one section's figures (and its HTML tables for the
report) from the tables the stage rules wrote:

    evaluation       eval/results.csv              evaluation_{task}_{n}shot: metric vs step per size,
                                                   standard vs deduped, Pythia's numbers overlaid when
                                                   the suite's models are Pythia's (reference.matching)
    loss             models/*/metrics.jsonl        loss (train/plot.plot_loss)
    memorization     memorization/report/summary.json   memorization_qq, memorization_position,
                                                   memorization_planted (synthetic planted repeats)
    term_frequency   term_frequency/report/{accuracy,delta}.csv + counts.parquet
                                                   term_frequency_accuracy_{op}_{k}shot, term_frequency_delta
    gender_bias      gender_bias/report/bias.csv + summary.json   bias_crowspairs, bias_winobias, bias_lambada
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from pythia_repro.atomic import atomic_file, write_text
from pythia_repro.config import Suite
from pythia_repro.errors import PythiaReproError
from pythia_repro.layout import safe_name

EXTENSIONS = ("png", "pdf")
# Section key -> (the paper's section, the report's category).
SECTIONS = {
    "loss": "1 Training",
    "evaluation": "2 Evaluation",
    "memorization": "3 Memorization",
    "term_frequency": "4 Term frequency",
    "gender_bias": "5 Gender bias",
}
TABLES = {
    "evaluation": ["evaluation_results", "pythia_parity"],
    "memorization": ["memorization"],
    "term_frequency": ["term_frequency_delta"],
    "gender_bias": ["bias_effects"],
}
LAMBADA_TASKS = ("lambada_heldout", "lambada_openai")


def evaluation_name(task: str, shots: int | str) -> str:
    return f"evaluation_{safe_name(task)}_{shots}shot"


def planted(suite: Suite) -> bool:
    return suite.corpus.source == "synthetic" and bool(suite.corpus.synthetic.planted_repeats)


def bias_models(suite: Suite) -> list:
    return [m for m in suite.models if suite.gender_bias_steps(m.name)]


def paper_figures(suite: Suite) -> dict[str, list[str]]:
    """{section: [figure name, ...]} of every paper figure the suite has data for (config only)."""
    out = {"loss": ["loss"]} if suite.trained_models else {}  # a published suite has no training curves
    out["evaluation"] = [evaluation_name(t, n) for t in suite.evaluate.tasks for n in suite.evaluate.num_fewshot]
    if suite.memorization.steps and any(suite.memorization_steps(m.name) for m in suite.models):
        out["memorization"] = ["memorization_qq", "memorization_position"] + (
            ["memorization_planted"] if planted(suite) else [])
    if suite.term_frequency_models:
        tf = suite.term_frequency
        out["term_frequency"] = [f"term_frequency_accuracy_{op}_{k}shot" for op in tf.ops for k in tf.shots] + [
            "term_frequency_delta"]
    models = bias_models(suite)
    if models:
        names = ["bias_crowspairs", "bias_winobias"]
        if any(m.is_intervention for m in models) and any(t in LAMBADA_TASKS for t in suite.evaluate.tasks):
            names.append("bias_lambada")
        out["gender_bias"] = names
    return out


def figure_paths(suite: Suite, section: str) -> list[Path]:
    """The files of one section's figures. loss.png is the training stage's own output (`loss_figure`,
    the same file); this stage adds its PDF."""
    names = paper_figures(suite).get(section, [])
    paths = [suite.layout.paper_figure(n, ext) for n in names for ext in EXTENSIONS]
    return [p for p in paths if p != suite.layout.loss_figure]


def table_paths(suite: Suite, section: str) -> list[Path]:
    if section not in paper_figures(suite):
        return []
    return [suite.layout.paper_figure(f"table_{n}", "html") for n in TABLES.get(section, [])]


# ----- drawing helpers ----------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, suite: Suite, name: str) -> list[Path]:
    """Write `fig` as the paper figure `name`, PNG and PDF (atomic), and close it."""
    plt = _pyplot()
    written = []
    for ext in EXTENSIONS:
        path = suite.layout.paper_figure(name, ext)
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, dpi=120, bbox_inches="tight")
        with atomic_file(path, "wb") as fh:
            fh.write(buf.getvalue())
        written.append(path)
    plt.close(fig)
    return written


def placeholder(suite: Suite, name: str, title: str, why: str) -> list[Path]:
    """A figure saying why there is nothing to draw (e.g. no memorized sequence), so outputs stay complete."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.text(0.5, 0.5, why, ha="center", va="center", wrap=True)
    ax.set_axis_off()
    ax.set_title(title, fontsize=10)
    return save(fig, suite, name)


def write_table(suite: Suite, name: str, frame: pd.DataFrame, title: str, note: str = "") -> Path:
    """A table as a small self-contained HTML page (what Snakemake's report can show inline)."""
    path = suite.layout.paper_figure(f"table_{name}", "html")
    body = frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="", border=0) if len(frame) else (
        "<p><em>no rows</em></p>")
    style = ("body{font-family:sans-serif;font-size:13px}table{border-collapse:collapse}"
             "td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}")
    html = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title><style>{style}</style>"
            f"</head><body><h3>{title}</h3>{f'<p>{note}</p>' if note else ''}{body}</body></html>\n")
    write_text(path, html)
    return path


def _read_csv(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise PythiaReproError(f"{path}: table not found (run its stage first)")
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def _read_json(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise PythiaReproError(f"{path}: summary not found (run its stage first)")
    return json.loads(path.read_text())


# ----- evaluation and Pythia's numbers -------------------------------------------------------------
def _metric_label(metric: str) -> str:
    base = metric.split(",")[0]
    if base.startswith("perplexity") or base in ("ppl", "word_perplexity", "byte_perplexity"):
        return f"{metric} (perplexity, lower is better)"
    if base.startswith("acc") or base in ("exact_match", "em"):
        return f"{metric} (fraction correct)"
    return metric


def _sizes(suite: Suite, sizes) -> list[str]:
    order = list(dict.fromkeys(m.size for m in suite.models))
    return [s for s in order if s in set(sizes)] + sorted(set(sizes) - set(order))


_STYLE = {"standard": ("-", "C0"), "deduped": ("--", "C1")}
_REF_COLOR = {"standard": "navy", "deduped": "saddlebrown"}  # Pythia's lines: darker shades of ours


def reference_rows(frame: pd.DataFrame):
    """Our rows joined with Pythia's published ones (empty when no model of the suite is Pythia's)."""
    from pythia_repro.evaluate.reference import matching

    if frame.empty:
        return frame.assign(value_ref=[], stderr_ref=[])
    return matching(frame)


def plot_evaluation(suite: Suite, frame: pd.DataFrame, joined: pd.DataFrame, task: str, shots: int) -> list[Path]:
    from pythia_repro.evaluate.benchmarks import stock_name
    from pythia_repro.evaluate.reference import overlay

    name = evaluation_name(task, shots)
    sub = frame[(frame["task"] == task) & (frame["num_fewshot"] == shots)] if len(frame) else frame
    title = f"{suite.name}: {task}, {shots}-shot"
    if sub.empty:
        return placeholder(suite, name, title, f"no evaluation results for {task} ({shots}-shot)")
    sources = sorted({s for s in sub.get("data_source", pd.Series(dtype=str)).dropna().unique() if s})
    source = "; ".join(sources) if sources else "lm-evaluation-harness"
    plt = _pyplot()
    metrics = sorted(sub["metric"].unique())
    sizes = _sizes(suite, sub["size"].astype(str).unique())
    fig, axes = plt.subplots(len(metrics), len(sizes), figsize=(3.6 * len(sizes) + 1, 2.8 * len(metrics) + 1),
                             squeeze=False, sharex=True)
    ref = joined[(joined["task"] == stock_name(task)) & (joined["num_fewshot"] == shots)] if len(joined) else joined
    with_ref = False
    for i, metric in enumerate(metrics):
        for j, size in enumerate(sizes):
            ax = axes[i][j]
            cell = sub[(sub["metric"] == metric) & (sub["size"].astype(str) == size)]
            for k, (model, line) in enumerate(cell.groupby("model", sort=True)):
                line = line.sort_values("step")
                data = str(line["dataset"].iloc[0])
                inter = line["intervention"].iloc[0] if "intervention" in line else None
                label = data + (f" + {inter}" if isinstance(inter, str) and inter else "")
                style, color = _STYLE.get(label, (":", f"C{2 + k}"))
                ax.plot(line["step"], line["value"], style, color=color, marker="o", markersize=2.5, linewidth=1.2,
                        label=f"{model} ({label})")
                err = line["stderr"].fillna(0.0)
                if (err > 0).any():
                    ax.fill_between(line["step"], line["value"] - err, line["value"] + err, color=color, alpha=0.15,
                                    linewidth=0)
            cref = ref[(ref["metric"] == metric) & (ref["size"].astype(str) == size)] if len(ref) else ref
            for model, rows in (cref.groupby("model") if len(cref) else []):
                rows = rows.drop(columns=["value", "stderr"]).rename(columns={"value_ref": "value",
                                                                              "stderr_ref": "stderr"})
                overlay(ax, rows, label=f"{model} (Pythia, published)")
                ax.lines[-1].set_color(_REF_COLOR["deduped" if model.endswith("-deduped") else "standard"])
                with_ref = True
            ax.set_xscale("symlog", linthresh=1)
            if metric.startswith("perplexity") and not cell.empty and (cell["value"] > 0).all():
                ax.set_yscale("log")
            if i == 0:
                ax.set_title(f"size {size}", fontsize=9)
            if j == 0:
                ax.set_ylabel(_metric_label(metric), fontsize=8)
            if i == len(metrics) - 1:
                ax.set_xlabel("training step (optimizer steps, symlog)")
            ax.grid(True, alpha=0.3)
            if not cell.empty:
                ax.legend(fontsize=6, loc="best")
    extra = "\ndashed with x: Pythia's published numbers (EleutherAI/pythia evals)" if with_ref else ""
    fig.suptitle(f"{title}, ±1 stderr bands\n(data: {source}){extra}", fontsize=10)
    fig.tight_layout()
    return save(fig, suite, name)


def parity(frame: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Ours minus Pythia's per model/task/n-shot/metric at the final step both have, with z in standard
    errors; empty (with a note) when no model of the suite is one of Pythia's."""
    from pythia_repro.evaluate.reference import parity_table, reference_source

    table = parity_table(frame) if len(frame) else parity_table(frame.iloc[0:0])
    if table.empty:
        return table, ("No model of this suite matches one of Pythia's (names pythia-70m ... pythia-12b[-deduped], "
                       "or the same size and dataset), so there is nothing to compare.")
    return table, f"Reference: {reference_source()}. z = (ours - Pythia's) / sqrt(se_ours² + se_Pythia²)."


def write_parity_csv(path: str | Path, table: pd.DataFrame) -> None:
    with atomic_file(path, "w") as fh:
        table.to_csv(fh, index=False)


def evaluation_section(suite: Suite, table: str | Path, parity_csv: str | Path) -> list[Path]:
    frame = _read_csv(table)
    if len(frame):
        frame = frame.astype({"step": "int64", "num_fewshot": "int64"})
    joined = reference_rows(frame) if len(frame) else pd.DataFrame()
    written = []
    for task in suite.evaluate.tasks:
        for shots in suite.evaluate.num_fewshot:
            written += plot_evaluation(suite, frame, joined, task, int(shots))
    par, note = parity(frame)
    write_parity_csv(parity_csv, par)
    written.append(Path(parity_csv))
    final = frame.sort_values("step").groupby(["model", "task", "num_fewshot", "metric"]).tail(1) if len(
        frame) else frame
    cols = [c for c in ("model", "size", "dataset", "step", "task", "num_fewshot", "metric", "value", "stderr")
            if c in final.columns]
    written.append(write_table(suite, "evaluation_results", final[cols] if len(final) else final,
                               f"{suite.name}: evaluation results at each model's last evaluated step",
                               "All steps: eval/results.csv"))
    written.append(write_table(suite, "pythia_parity", par, f"{suite.name}: ours minus Pythia's published numbers",
                               note))
    return written


# ----- memorization -------------------------------------------------------------------------------
def memorization_section(suite: Suite, summary_path: str | Path, table: str | Path) -> list[Path]:
    summary = _read_json(summary_path)
    models = summary.get("models", {})
    bin_size = summary.get("bin_size", suite.memorization.bin_size)
    plt = _pyplot()
    written = []
    names = list(models)
    cols = min(len(names), 4) or 1
    nrows = max(1, math.ceil(len(names) / cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(3.8 * cols, 3.6 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        e = models[name]
        qq = e.get("qq", {})
        if qq.get("observed"):
            ax.scatter(qq["theoretical"], qq["observed"], s=12, alpha=0.6, label=f"bins of {bin_size}")
            hi = max(max(qq["observed"]), max(qq["theoretical"]), 1)
            ax.plot([0, hi], [0, hi], color="k", lw=1, label="y = x (Poisson)")
            ax.legend(fontsize=7, loc="upper left")
        else:
            ax.text(0.5, 0.5, "no complete bin", ha="center", transform=ax.transAxes)
        p = (e.get("chi_square") or {}).get("p_value")
        ax.set_title(f"{name} (step {e.get('step', '?')})\nchi² p = {'n/a' if p is None else f'{p:.3g}'}", fontsize=8)
        ax.set_xlabel(f"Poisson quantile (memorized per {bin_size} sequences)", fontsize=7)
        ax.set_ylabel(f"observed (memorized per {bin_size} sequences)", fontsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(f"{suite.name}: memorized sequences per bin in training order vs Poisson "
                 f"(k = l = {suite.memorization.k}; {suite.corpus.source} corpus)", fontsize=10)
    fig.tight_layout()
    written += save(fig, suite, "memorization_qq")

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name in names:
        e = models[name]
        groups = (e.get("position") or {}).get("groups") or []
        if groups:
            x = [100 * (g["start"] + g["stop"]) / 2 / e["sequences"] for g in groups]
            ax.errorbar(x, [100 * g["rate"] for g in groups], yerr=[100 * g["stderr"] for g in groups], marker="o",
                        ms=3, capsize=2, label=name)
    ax.set_xlabel("position in training (% of sequences seen, decile midpoints)")
    ax.set_ylabel("memorized rate (%, ±1 binomial s.e.)")
    ax.set_title(f"{suite.name}: memorization vs position in training ({suite.corpus.source} corpus)", fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    written += save(fig, suite, "memorization_position")

    if planted(suite):
        shown = [n for n in names if "planted" in models[n]]
        if not shown:
            written += placeholder(suite, "memorization_planted", f"{suite.name}: planted repeats",
                                   "no planted-repeat flags in the memorization summary")
        else:
            fig, ax = plt.subplots(figsize=(7, 4.2))
            x = np.arange(len(shown))
            for off, part, color in ((-0.2, "planted", "tab:red"), (0.2, "other", "tab:blue")):
                rates = [100 * (models[n]["planted"][part]["rate"] or 0.0) for n in shown]
                ax.bar(x + off, rates, width=0.4, color=color, label=f"{part} sequences")
            labels = [f"{n}\n({models[n].get('data', '?')})" for n in shown]
            ax.set_xticks(x, labels, fontsize=7, rotation=20, ha="right")
            ax.set_xlabel("model (training data)")
            ax.set_ylabel("memorized rate (%)")
            ax.set_title(f"{suite.name}: planted repeats vs other sequences (synthetic corpus)", fontsize=10)
            ax.legend(fontsize=7)
            ax.grid(alpha=0.3, axis="y")
            written += save(fig, suite, "memorization_planted")
    written.append(write_table(suite, "memorization", _read_csv(table),
                               f"{suite.name}: memorization per model at its last memorization checkpoint"))
    return written


# ----- term frequency -----------------------------------------------------------------------------
def _with_frequencies(suite: Suite, accuracy: pd.DataFrame, counts: dict[str, pd.DataFrame]) -> pd.DataFrame:
    data_of = {m.name: suite.data_order_name(m.data, m.seed) for m in suite.term_frequency_models}
    parts = []
    for (model, step), g in accuracy.groupby(["model", "step"]):
        c = counts.get(data_of.get(model, ""))
        if c is None:
            raise PythiaReproError(f"term frequency: no counts for the data order of {model}")
        at = c[c["step"] == int(step)].set_index("term")["count"]
        parts.append(g.assign(freq=[int(at.get(str(x), 0)) for x in g["x1"]]))
    return pd.concat(parts, ignore_index=True) if parts else accuracy.assign(freq=[])


def term_frequency_section(suite: Suite, accuracy_csv, delta_csv, counts_files: list[str | Path]) -> list[Path]:
    from pythia_repro.analysis.term_frequency import read_counts

    accuracy, delta = _read_csv(accuracy_csv), _read_csv(delta_csv)
    by_name = {Path(p).parent.name: read_counts(p) for p in counts_files}
    frame = _with_frequencies(suite, accuracy, by_name) if len(accuracy) else accuracy
    plt = _pyplot()
    tf = suite.term_frequency
    models = [m.name for m in suite.term_frequency_models]
    written = []
    for op in tf.ops:
        for k in tf.shots:
            name = f"term_frequency_accuracy_{op}_{k}shot"
            g = frame[(frame["op"] == op) & (frame["k"] == k)] if len(frame) else frame
            if g.empty:
                written += placeholder(suite, name, f"{suite.name}: {op}, {k}-shot", "no arithmetic results")
                continue
            shown = [m for m in models if m in set(g["model"])]
            fig, axes = plt.subplots(1, len(shown), figsize=(4.4 * len(shown), 4), squeeze=False, sharey=True)
            positive = g["freq"][g["freq"] > 0]
            lo, hi = (positive.min(), positive.max()) if len(positive) else (1, 10)
            edges = np.logspace(np.log10(lo), np.log10(hi) + 1e-9, 11) if hi > lo else np.array([lo * 0.9, hi * 1.1])
            for ax, model in zip(axes[0], shown, strict=True):
                for step, s in g[g["model"] == model].groupby("step"):
                    s = s[s["freq"] > 0]
                    if s.empty:
                        continue
                    b = np.clip(np.digitize(s["freq"], edges) - 1, 0, len(edges) - 2)
                    agg = s.assign(bin=b).groupby("bin").agg(correct=("correct", "sum"), n=("n", "sum"))
                    centres = np.sqrt(edges[agg.index] * edges[agg.index + 1])
                    ax.plot(centres, agg["correct"] / agg["n"], marker="o", label=f"step {step}")
                ax.set_xscale("log")
                ax.set_ylim(-0.02, 1.02)
                ax.set_xlabel("occurrences of x1 in the data seen (count, log bins)")
                ax.set_title(model, fontsize=9)
                ax.grid(alpha=0.3)
                if ax.get_legend_handles_labels()[0]:
                    ax.legend(title="checkpoint", fontsize=7)
            axes[0][0].set_ylabel("accuracy (fraction correct)")
            fig.suptitle(f"{suite.name}: arithmetic accuracy vs term frequency, {op}, {k}-shot "
                         f"({suite.corpus.source} corpus)", fontsize=10)
            fig.tight_layout()
            written += save(fig, suite, name)

    pairs = [(op, k) for op in tf.ops for k in tf.shots]
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.6 * len(pairs), 4), squeeze=False, sharey=True)
    for ax, (op, k) in zip(axes[0], pairs, strict=True):
        d = delta[(delta["op"] == op) & (delta["k"] == k)] if len(delta) else delta
        for model, m in (d.groupby("model") if len(d) else []):
            m = m.sort_values("step")
            yerr = np.vstack([m["delta"] - m["ci_low"], m["ci_high"] - m["delta"]]) * 100
            ax.errorbar(m["step"], m["delta"] * 100, yerr=yerr, marker="o", capsize=3, label=model)
        ax.axhline(0, color="grey", lw=1, ls="--")
        ax.set_xlabel("training step")
        ax.set_title(f"{op}, {k}-shot", fontsize=9)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    axes[0][0].set_ylabel("Δ accuracy, top-10 minus bottom-10 x1 (points)")
    fig.suptitle(f"{suite.name}: Δ accuracy between frequent and rare x1 (95% Newcombe CI; "
                 f"{suite.corpus.source} corpus)", fontsize=10)
    fig.tight_layout()
    written += save(fig, suite, "term_frequency_delta")
    written.append(write_table(suite, "term_frequency_delta", delta,
                               f"{suite.name}: Δ per model, operation, shots and step"))
    return written


# ----- gender bias --------------------------------------------------------------------------------
def _bias_curves(ax, table: pd.DataFrame, suite: Suite, task: str, metric: str, scale: float) -> bool:
    sub = table[(table["task"] == task) & (table["metric"] == metric)]
    if sub.empty:
        return False
    for model, g in sub.groupby("model", sort=True):
        g = g.sort_values("step")
        iv = bool(g["intervention"].iloc[0])
        ax.errorbar(g["pct_training"], g["value"] * scale, yerr=g["stderr"].fillna(0) * scale,
                    ls=":" if iv else "-", marker="s" if iv else "o", ms=4, capsize=2,
                    label=f"{model} ({'intervention' if iv else 'base'})")
    ax.set_xlabel("% of training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return True


def gender_bias_section(suite: Suite, bias_csv, summary_json) -> list[Path]:
    table = _read_csv(bias_csv)
    effects = pd.DataFrame(_read_json(summary_json).get("intervention_effects") or [])
    names = paper_figures(suite)["gender_bias"]
    source = suite.gender_bias.source_label
    plt = _pyplot()
    written = []
    tasks = set(table["task"]) if len(table) else set()
    crows = next((t for t in ("crows_pairs_gender", "crows_pairs_english_gender") if t in tasks), None)
    title = f"{suite.name}: CrowS-Pairs gender, % stereotype ({source})"
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    if crows and _bias_curves(ax, table, suite, crows, "pct_stereotype", 100.0):
        ax.axhline(50, color="grey", lw=1, ls="--")
        ax.set_ylabel("% stereotype (stereotyping sentence likelier)")
        ax.set_title(title, fontsize=10)
        written += save(fig, suite, "bias_crowspairs")
    else:
        plt.close(fig)
        written += placeholder(suite, "bias_crowspairs", title, "no CrowS-Pairs results")

    title = f"{suite.name}: WinoBias, multiple choice by log-likelihood ({source})"
    panels = [("winobias_type1", "net_bias", "type 1 net bias, pro - anti (points)"),
              ("winobias_type2", "net_bias", "type 2 net bias, pro - anti (points)"),
              ("winobias", "mean_acc", "mean accuracy over the 4 subsets (%)")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    drawn = []
    for ax, (task, metric, label) in zip(axes, panels, strict=True):
        drawn.append(_bias_curves(ax, table, suite, task, metric, 100.0) if len(table) else False)
        ax.set_ylabel(label)
        ax.axhline(0 if metric == "net_bias" else 50, color="grey", lw=1, ls="--")
    if any(drawn):
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        written += save(fig, suite, "bias_winobias")
    else:
        plt.close(fig)
        written += placeholder(suite, "bias_winobias", title, "no WinoBias results")

    if "bias_lambada" in names:
        rows = effects[effects["metric"] == "perplexity"] if len(effects) else effects
        lambada = next((t for t in LAMBADA_TASKS if t in suite.evaluate.tasks), "lambada")
        title = f"{suite.name}: {lambada} perplexity, intervention vs base (bias data: {source})"
        if rows.empty:
            written += placeholder(suite, "bias_lambada", title, "no intervention/base perplexity pair")
        else:
            rows = rows.sort_values(["params", "model"])
            fig, ax = plt.subplots(figsize=(1.8 * len(rows) + 3.5, 4.2))
            x = np.arange(len(rows))
            ax.bar(x - 0.2, rows["base_value"], 0.4, yerr=rows["base_stderr"], capsize=3, label="base")
            ax.bar(x + 0.2, rows["intervention"], 0.4, yerr=rows["intervention_stderr"], capsize=3,
                   label="intervention", hatch="//")
            ax.set_xticks(x, [f"{m}\nstep {s}" for m, s in zip(rows["model"], rows["step"], strict=True)], fontsize=7)
            ax.set_xlabel("intervention model (same final step as its base)")
            ax.set_ylabel(f"{lambada} perplexity (lower is better)")
            ax.set_title(title, fontsize=10)
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3, axis="y")
            written += save(fig, suite, "bias_lambada")
    written.append(write_table(suite, "bias_effects", effects,
                               f"{suite.name}: intervention minus base at the final step ({source})"))
    return written


# ----- loss ---------------------------------------------------------------------------------------
def loss_section(suite: Suite) -> list[Path]:
    from pythia_repro.train.plot import plot_loss

    return [plot_loss(suite, p) for p in figure_paths(suite, "loss")]
