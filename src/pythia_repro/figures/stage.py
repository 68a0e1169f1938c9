"""The figures stage on a suite: each section's inputs from the layout, and the calls that draw it."""

from __future__ import annotations

from pathlib import Path

from pythia_repro.config import Suite
from pythia_repro.errors import PythiaReproError
from pythia_repro.figures import paper


def section_inputs(suite: Suite, section: str) -> dict[str, list[Path]]:
    """The stage outputs one section is drawn from (the workflow's inputs of its rule)."""
    layout = suite.layout
    if section not in paper.paper_figures(suite):
        return {}
    if section == "loss":
        return {"metrics": [layout.metrics(m.name) for m in suite.trained_models]}
    if section == "evaluation":
        return {"table": [layout.eval_table("csv")]}
    if section == "memorization":
        report = layout.memorization_report_dir
        return {"summary": [report / "summary.json"], "table": [report / "memorization.csv"]}
    if section == "term_frequency":
        report = layout.term_frequency_report_dir
        return {"accuracy": [report / "accuracy.csv"], "delta": [report / "delta.csv"],
                "counts": [layout.term_counts(d) for d in suite.term_count_orders]}
    if section == "gender_bias":
        report = layout.bias_report_dir
        return {"bias": [report / "bias.csv"], "summary": [report / "summary.json"]}
    raise PythiaReproError(f"unknown figures section {section!r}; known: {sorted(paper.SECTIONS)}")


def section_outputs(suite: Suite, section: str) -> list[Path]:
    """Every file one section writes (empty when the suite has no data for it)."""
    out = paper.figure_paths(suite, section) + paper.table_paths(suite, section)
    if section == "evaluation" and out:
        out.append(suite.layout.parity_table)
    return out


def write_section(suite: Suite, section: str) -> list[Path]:
    if section not in paper.SECTIONS:
        raise PythiaReproError(f"unknown figures section {section!r}; known: {sorted(paper.SECTIONS)}")
    if section not in paper.paper_figures(suite):
        raise PythiaReproError(f"{suite.source}: the suite has no data for the {section} figures "
                               "(its case study is off)")
    inputs = section_inputs(suite, section)
    if section == "loss":
        return paper.loss_section(suite)
    if section == "evaluation":
        return paper.evaluation_section(suite, inputs["table"][0], suite.layout.parity_table)
    if section == "memorization":
        return paper.memorization_section(suite, inputs["summary"][0], inputs["table"][0])
    if section == "term_frequency":
        return paper.term_frequency_section(suite, inputs["accuracy"][0], inputs["delta"][0], inputs["counts"])
    return paper.gender_bias_section(suite, inputs["bias"][0], inputs["summary"][0])
