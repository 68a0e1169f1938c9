"""Which paper figures a suite has: known from the config alone; a switched-off case study drops its own."""

from __future__ import annotations

from pathlib import Path

import yaml

from pythia_repro.config import load_suite
from pythia_repro.figures.paper import paper_figures
from pythia_repro.figures.stage import section_outputs

REPO = Path(__file__).resolve().parents[2]


def _suite(tmp_path, **analysis):
    raw = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    raw["results_dir"] = str(tmp_path)
    for key, value in analysis.items():
        raw.setdefault("analysis", {}).setdefault(key, {}).update(value)
    return load_suite(raw)


def test_default_suite_has_every_section(tmp_path):
    figures = paper_figures(_suite(tmp_path))
    assert set(figures) == {"loss", "evaluation", "memorization", "term_frequency", "gender_bias"}
    assert "evaluation_lambada_heldout_0shot" in figures["evaluation"]
    assert "term_frequency_delta" in figures["term_frequency"]


def test_switched_off_case_studies_drop_their_figures(tmp_path):
    suite = _suite(tmp_path, memorization={"steps": []}, term_frequency={"steps": []}, gender_bias={"enabled": False})
    assert set(paper_figures(suite)) == {"loss", "evaluation"}
    assert section_outputs(suite, "memorization") == []
    outputs = section_outputs(suite, "evaluation")
    assert suite.layout.parity_table in outputs
    assert {p.suffix for p in outputs} == {".png", ".pdf", ".csv", ".html"}
    # loss.png is the training stage's output; the figures stage adds only its PDF.
    assert section_outputs(suite, "loss") == [suite.layout.paper_figure("loss", "pdf")]


def test_a_pythia_suite_gets_the_reference_overlay_and_parity(tmp_path):
    """Our evaluation of Pythia's own models (here: Pythia's published numbers shifted by one standard
    error, as a re-run might give) is drawn beside the reference and compared in the parity table."""
    import pandas as pd

    from pythia_repro.evaluate.reference import load_reference
    from pythia_repro.figures.paper import evaluation_section

    raw = yaml.safe_load((REPO / "config" / "pythia.yaml").read_text())
    raw.update(results_dir=str(tmp_path), evaluate={**raw["evaluate"], "tasks": ["lambada_openai"], "num_fewshot": [0]})
    suite = load_suite(raw)
    ref = load_reference()
    ours = ref[(ref.model == "pythia-160m") & (ref.task == "lambada_openai") & (ref.num_fewshot == 0)].copy()
    ours["value"] = ours["value"] + ours["stderr"]
    ours = ours.assign(size="160m", dataset="standard", tokens_seen=0, arch="gpt-neox", seed=1234, intervention=None,
                       data_source="harness")
    table = tmp_path / "results.csv"
    ours.to_csv(table, index=False)
    written = evaluation_section(suite, table, tmp_path / "parity.csv")
    parity = pd.read_csv(tmp_path / "parity.csv")
    final = parity[(parity.model == "pythia-160m") & (parity.metric == "acc")]
    assert len(final) == 1 and int(final.step.iloc[0]) == 143000
    # One of our standard errors above Pythia's value: z = se / sqrt(2 se^2) = 1/sqrt(2).
    assert abs(float(final.z.iloc[0]) - 2 ** -0.5) < 1e-6
    assert suite.layout.paper_figure("evaluation_lambada_openai_0shot", "png") in written
