"""Pythia's published numbers (package data) and the parity table against them."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from pythia_repro.evaluate.reference import load_reference, matching, overlay, parity_table, reference_source

SIZES = ["70m", "160m", "410m", "1b", "1.4b", "2.8b", "6.9b", "12b"]


@pytest.fixture(scope="module")
def reference():
    return load_reference()


def _value(ref, model, task, metric, shots=0, step=143000):
    row = ref[(ref.model == model) & (ref.task == task) & (ref.metric == metric) & (ref.num_fewshot == shots)
              & (ref.step == step)]
    assert len(row) == 1, (model, task, metric)
    return float(row.value.iloc[0])


def test_reference_has_the_16_models_all_steps_and_paper_values(reference):
    assert set(reference.model) == {f"pythia-{s}{d}" for s in SIZES for d in ("", "-deduped")}
    steps = reference.groupby(["model", "num_fewshot"])["step"].nunique()
    assert (steps.xs(0, level="num_fewshot") == 27).all() and (steps.xs(5, level="num_fewshot") == 15).all()
    assert set(reference.task) == {"lambada_openai", "piqa", "winogrande", "wsc", "arc_easy", "arc_challenge",
                                   "sciq", "logiqa"}
    assert not reference.duplicated(["model", "step", "task", "num_fewshot", "metric"]).any()
    # PYTHIA.md section 3 (the paper's step-143000 zero-shot numbers).
    assert _value(reference, "pythia-160m", "lambada_openai", "acc") == pytest.approx(0.328, abs=5e-4)
    assert _value(reference, "pythia-160m", "lambada_openai", "perplexity") == pytest.approx(38.1, abs=0.05)
    assert _value(reference, "pythia-160m", "piqa", "acc") == pytest.approx(0.627, abs=5e-4)
    assert _value(reference, "pythia-160m", "sciq", "acc") == pytest.approx(0.741, abs=5e-4)
    assert _value(reference, "pythia-1.4b", "lambada_openai", "acc") == pytest.approx(0.616, abs=5e-4)
    assert _value(reference, "pythia-1.4b", "lambada_openai", "perplexity") == pytest.approx(6.09, abs=0.01)
    assert _value(reference, "pythia-1.4b", "winogrande", "acc") == pytest.approx(0.573, abs=5e-4)
    assert reference.stderr.notna().all()
    assert "a19eecb807ec2c79a39ebf18108816e6ffffc1d5" in reference_source()


def _ours(rows):
    base = {"dataset": "standard", "tokens_seen": 0, "arch": None, "seed": None, "intervention": None}
    return pd.DataFrame([{**base, **r} for r in rows])


def _ref(rows):
    return pd.DataFrame(rows, columns=["model", "step", "task", "num_fewshot", "metric", "value", "stderr"])


def test_parity_maps_names_and_takes_the_final_step():
    reference = _ref([
        ["pythia-160m", 143000, "lambada_openai", 0, "ppl", 38.0, 1.0],
        ["pythia-160m", 143000, "lambada_openai", 0, "acc", 0.33, 0.003],
        ["pythia-160m", 1000, "lambada_openai", 0, "acc", 0.10, 0.003],
        ["pythia-160m", 143000, "piqa", 0, "acc", 0.62, 0.01],
    ])
    ours = _ours([
        dict(model="pythia-160m", size="160m", step=143000, task="lambada_openai_offline", num_fewshot=0,
             metric="perplexity", value=41.0, stderr=0.0),
        dict(model="pythia-160m", size="160m", step=143000, task="lambada_openai_offline", num_fewshot=0,
             metric="acc", value=0.33 + 0.005 * 2, stderr=0.004),
        dict(model="pythia-160m", size="160m", step=1000, task="lambada_openai_offline", num_fewshot=0,
             metric="acc", value=0.2, stderr=0.01),
        # Named differently in the suite: matched on size + dataset.
        dict(model="my-160m", size="160m", step=143000, task="piqa", num_fewshot=0, metric="acc", value=0.60,
             stderr=0.0),
        dict(model="pythia-160m", size="160m", step=143000, task="piqa", num_fewshot=5, metric="acc", value=0.6,
             stderr=0.01),  # no reference row: dropped
    ])
    joined = matching(ours, reference)
    assert len(joined) == 4
    table = parity_table(ours, reference).set_index(["task", "metric"])
    assert list(table.index) == [("lambada_openai", "acc"), ("lambada_openai", "perplexity"), ("piqa", "acc")]
    assert (table.step == 143000).all()
    assert table.loc[("lambada_openai", "acc"), "z"] == pytest.approx(2.0)
    assert table.loc[("lambada_openai", "perplexity"), "z"] == pytest.approx(3.0)
    assert table.loc[("piqa", "acc"), "z"] == pytest.approx(-2.0)
    early = parity_table(ours, reference, step=1000)
    assert early.z.iloc[0] == pytest.approx(0.1 / math.sqrt(0.01**2 + 0.003**2))


def test_parity_against_the_shipped_reference(reference):
    ours = _ours([dict(model="pythia-1.4b", size="1.4b", step=143000, task="sciq", num_fewshot=0, metric="acc",
                       value=0.865, stderr=0.01)])
    row = parity_table(ours).iloc[0]
    assert row.value_ref == pytest.approx(0.865, abs=5e-4)
    assert abs(row.z) < 0.1


def test_overlay_draws_a_black_dashed_line(reference):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = reference[(reference.model == "pythia-70m") & (reference.task == "piqa") & (reference.metric == "acc")
                     & (reference.num_fewshot == 0)]
    fig, ax = plt.subplots()
    overlay(ax, rows, errorbars=True)
    (line,) = ax.get_lines()
    assert line.get_linestyle() == "--" and line.get_color() == "black" and len(line.get_xdata()) == 27
    plt.close(fig)
