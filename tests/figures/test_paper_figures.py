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
