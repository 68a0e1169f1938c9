"""A fake finished run: the stage outputs the figures stage reads, synthetic and written in seconds.

`write_fake_results(suite)` writes, under the suite's layout, what training, evaluation and the case
studies would leave behind for the figures (metrics.jsonl, segment markers, loss.png, the tidy eval
table, the memorization / term-frequency / gender-bias report tables and summaries), with plausible
shapes: loss falling, accuracy rising over steps, a few memorized sequences. The figures tests and
the report test build on it; nothing here trains or evaluates a model.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from pythia_repro.atomic import atomic_file, write_json, write_text
from pythia_repro.config import Suite


def _metrics(suite: Suite, rng: np.random.Generator) -> None:
    layout = suite.layout
    for i, spec in enumerate(suite.models):
        steps = np.arange(1, suite.train_iters + 1)
        loss = 2.0 + 6.0 / np.sqrt(steps) + 0.05 * i + rng.normal(0, 0.03, len(steps))
        lr = 1e-3 * np.minimum(1.0, steps / max(1, suite.train_iters // 10))
        batch = suite.batch_schedule.batch_size(steps - 1)  # record s is the update on batch s - 1
        write_text(layout.metrics(spec.name), "".join(
            json.dumps({"step": int(s), "loss": float(v), "lr": float(r), "batch_size": int(b)}) + "\n"
            for s, v, r, b in zip(steps, loss, lr, batch, strict=True)))
        for end in suite.segment_ends(spec.name):
            write_json(layout.segment_marker(spec.name, end), {"model": spec.name, "end": end, "fake": True})
    from pythia_repro.train.plot import plot_loss

    plot_loss(suite, layout.loss_figure)


def _eval_table(suite: Suite, rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for i, spec in enumerate(suite.models):
        for step in suite.eval_steps(spec.name):
            progress = math.log1p(step) / math.log1p(suite.train_iters)
            for task in suite.evaluate.tasks:
                for shots in suite.evaluate.num_fewshot:
                    acc = min(0.95, 0.05 + 0.4 * progress + 0.02 * i + 0.01 * shots + rng.normal(0, 0.01))
                    ppl = 3000.0 * math.exp(-5 * progress) + 20 + 5 * i
                    for metric, value, se in (("acc", acc, math.sqrt(acc * (1 - acc) / 500)),
                                              ("perplexity", ppl, ppl * 0.05)):
                        rows.append({"model": spec.name, "size": spec.size, "dataset": spec.data, "step": step,
                                     "tokens_seen": suite.tokens_seen(step), "task": task, "num_fewshot": shots,
                                     "metric": metric, "value": value, "stderr": se, "arch": spec.arch,
                                     "seed": spec.seed, "intervention": spec.substitution or "",
                                     "data_source": "synthetic (fake results)"})
    frame = pd.DataFrame(rows)
    layout = suite.layout
    with atomic_file(layout.eval_table("csv"), "w") as fh:
        frame.to_csv(fh, index=False)
    with atomic_file(layout.eval_table("parquet"), "wb") as fh:
        frame.to_parquet(fh, index=False)
    from pythia_repro.evaluate.aggregate import plot_figures

    pairs = [(t, n) for t in suite.evaluate.tasks for n in suite.evaluate.num_fewshot]
    plot_figures(frame, layout.eval_figures_dir, pairs, suite)
    return frame


def _memorization(suite: Suite, rng: np.random.Generator, tmp: Path) -> None:
    from pythia_repro.analysis.memorization import write_scores
    from pythia_repro.analysis.poisson import memorization_report

    files, meta, planted = {}, {}, {}
    for spec in suite.models:
        steps = suite.memorization_steps(spec.name)
        if not steps:
            continue
        n = suite.batch_schedule.samples_before(steps[-1])
        mem = rng.random(n) < 0.03
        path = tmp / f"{spec.name}.parquet"
        write_scores(path, np.arange(n), np.where(mem, 1.0, rng.random(n) * 0.5), mem)
        files[spec.name] = path
        meta[spec.name] = {"size": spec.size, "data": spec.data, "step": steps[-1],
                           "intervention": spec.substitution}
        planted[spec.name] = rng.random(n) < 0.05
    memorization_report(files, meta, suite.layout.memorization_report_dir, bin_size=suite.memorization.bin_size,
                        planted=planted, suite=suite.name)


def _term_frequency(suite: Suite, rng: np.random.Generator) -> None:
    from pythia_repro.analysis.arithmetic import term_frequency_report
    from pythia_repro.analysis.term_frequency import write_counts

    tf, layout = suite.term_frequency, suite.layout
    steps = sorted(tf.steps)
    x1 = list(tf.x1_values)
    base = {x: 1 + int(1000 / (1 + x)) for x in x1}  # small numbers are frequent, as in the Pile
    paths = {}
    for data in suite.term_count_orders:
        rows = [{"step": s, "term": str(x), "count": int(base[x] * s / steps[-1])} for s in steps for x in x1]
        frame = pd.DataFrame(rows)
        frame.attrs["steps"] = steps
        write_counts(layout.term_counts(data), frame)
        paths[data] = layout.term_counts(data)
    acc, meta = [], {}
    for spec in suite.term_frequency_models:
        meta[spec.name] = {"data": suite.data_order_name(spec.data, spec.seed), "label": spec.name,
                           "params": suite.approx_parameters(spec.name)}
        for s in steps:
            for op in tf.ops:
                for k in tf.shots:
                    for x in x1:
                        p = min(1.0, 0.05 + 0.5 * (s / steps[-1]) * math.log1p(base[x]) / math.log1p(1001))
                        n = 4
                        correct = int(rng.binomial(n, p))
                        acc.append({"task": f"arithmetic_{op}_{k}shot", "op": op, "k": k, "x1": x, "n": n,
                                    "correct": correct, "accuracy": correct / n, "model": spec.name, "step": s})
    accuracy = pd.DataFrame(acc)
    out = layout.term_frequency_report_dir
    with atomic_file(out / "accuracy.csv", "w") as fh:
        accuracy.to_csv(fh, index=False)
    term_frequency_report(paths, accuracy, meta, out, suite=suite.name)


def _gender_bias(suite: Suite, rng: np.random.Generator) -> None:
    rows, effects = [], []
    models = [m for m in suite.models if suite.gender_bias_steps(m.name)]
    for spec in models:
        iv = spec.is_intervention
        for step in suite.gender_bias_steps(spec.name):
            base = {"model": spec.name, "size": spec.size, "params": suite.approx_parameters(spec.name), "step": step,
                    "pct_training": 100.0 * step / suite.train_iters, "intervention": iv, "base": spec.base}
            for task, metric, value in (("crows_pairs_gender", "pct_stereotype", 0.6 - 0.1 * iv),
                                        ("winobias_type1", "net_bias", 0.1 - 0.08 * iv),
                                        ("winobias_type2", "net_bias", 0.05 - 0.04 * iv),
                                        ("winobias", "mean_acc", 0.55),
                                        ("lambada_heldout", "perplexity", 40.0 + 2 * iv)):
                rows.append({**base, "task": task, "metric": metric, "value": value + rng.normal(0, 0.01),
                             "stderr": 0.02, "derived": task.startswith("winobias")})
    table = pd.DataFrame(rows)
    for spec in models:
        if not spec.is_intervention:
            continue
        step = suite.gender_bias_steps(spec.name)[-1]
        at = table[table["step"] == step].set_index(["model", "task", "metric"])
        for task, metric in (("crows_pairs_gender", "pct_stereotype"), ("lambada_heldout", "perplexity")):
            iv, bv = at.loc[(spec.name, task, metric)], at.loc[(spec.base, task, metric)]
            effects.append({"model": spec.name, "base": spec.base, "size": spec.size,
                            "params": suite.approx_parameters(spec.name), "step": step, "task": task,
                            "metric": metric, "intervention": float(iv["value"]), "intervention_stderr": 0.02,
                            "base_value": float(bv["value"]), "base_stderr": 0.02,
                            "effect": float(iv["value"] - bv["value"]), "stderr": 0.028, "verdict": "fake"})
    out = suite.layout.bias_report_dir
    with atomic_file(out / "bias.csv", "w") as fh:
        table.to_csv(fh, index=False)
    write_json(out / "summary.json", {"suite": suite.name, "source": suite.gender_bias.source_label,
                                      "intervention_effects": effects, "fake": True})


def write_fake_results(suite: Suite, seed: int = 0) -> None:
    """Every stage output the figures stage reads, for the suite's config (its switched-off case
    studies left out)."""
    import tempfile

    rng = np.random.default_rng(seed)
    _metrics(suite, rng)
    _eval_table(suite, rng)
    if suite.memorization.steps:
        with tempfile.TemporaryDirectory() as tmp:
            _memorization(suite, rng, Path(tmp))
    if suite.term_frequency_models:
        _term_frequency(suite, rng)
    if any(suite.gender_bias_steps(m.name) for m in suite.models):
        _gender_bias(suite, rng)
