"""Every output of the default suite's DAG is a path the layout names, and every path the layout
names for the suite is planned: the rules build no path of their own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pythia_repro.config import load_suite

REPO = Path(__file__).resolve().parents[2]


def expected_outputs(suite) -> set[Path]:
    """The suite's outputs, enumerated from the layout and the suite's own lists only."""
    layout = suite.layout
    shards = [f"{i:02d}" for i in range(suite.corpus.synthetic.num_shards)]
    out = {layout.synthetic_shard(s) for s in shards} | {layout.heldout_file, layout.corpus_manifest, layout.tokenizer}
    out |= {layout.dedup_signatures(s) for s in shards} | {layout.deduped_shard(s) for s in shards}
    out |= {layout.dedup_keep, layout.dedup_report}
    for variant in suite.variants:
        out |= {p for s in shards for p in layout.token_files(layout.shard_tokens(variant, s))}
        out |= set(layout.token_files(layout.data_prefix(variant)))
        out |= {p for seed in suite.seeds for p in suite.index_maps(variant, seed)}
    for spec in suite.models:
        out |= {layout.segment_marker(spec.name, end) for end in suite.segment_ends(spec.name)}
        for step in suite.export_steps(spec.name):
            out |= {layout.export_dir(spec.name, step), layout.upload_receipt(spec.name, step)}
        out |= {layout.eval_record(spec.name, step) for step in suite.eval_steps(spec.name)}
    out |= {layout.eval_tasks_dir, layout.eval_table("csv"), layout.eval_table("parquet"), layout.loss_figure}
    out |= {layout.eval_figure(t, n) for t in suite.evaluate.tasks for n in suite.evaluate.num_fewshot}
    if suite.evaluate.benchmarks:
        out.add(layout.benchmarks_dir)
    for spec in suite.models:
        for step in suite.memorization_steps(spec.name):
            out |= {layout.memorization_scores(spec.name, step), layout.memorization_summary(spec.name, step)}
            out |= {layout.memorization_slice(spec.name, step, i, suite.memorization.slices)
                    for i in range(suite.memorization.slices)}
        for step in suite.term_frequency_steps(spec.name):
            out |= {layout.arithmetic_record(spec.name, step), layout.arithmetic_samples(spec.name, step)}
        out |= {layout.bias_record(spec.name, step) for step in suite.gender_bias_steps(spec.name)}
    if any(suite.gender_bias_steps(m.name) for m in suite.models):
        out |= {layout.bias_tasks_dir, layout.bias_report_dir / "summary.json", layout.bias_report_dir / "bias.csv"}
    if suite.memorization.steps:
        report = layout.memorization_report_dir
        out |= {report / f for f in ("summary.json", "memorization.csv", "qq.png", "rate_vs_position.png")}
    if suite.term_frequency.steps:
        out.add(layout.arithmetic_tasks_dir)
        for data in suite.term_count_orders:
            out.add(layout.term_counts(data))
            out |= {layout.term_counts_part(data, a, b) for a, b in suite.term_frequency.parts()}
        report = layout.term_frequency_report_dir
        tf = suite.term_frequency
        out |= {report / f for f in ("summary.json", "delta.csv", "accuracy.csv")}
        out |= {report / f"{kind}_{op}_{k}shot.png" for op in tf.ops for k in tf.shots
                for kind in ("accuracy_vs_frequency", "delta")}
    if suite.triviaqa_models:
        from pythia_repro.analysis.triviaqa import FILES

        for data in suite.term_count_orders:
            out.add(layout.triviaqa_counts(data))
            out |= {layout.triviaqa_counts_part(data, a, b) for a, b in suite.term_frequency.parts()}
        out |= {layout.triviaqa_report_dir / f for f in FILES}
    # The paper's figures: each section's names come from pythia_repro.figures (from the config).
    from pythia_repro.figures.paper import paper_figures
    from pythia_repro.figures.stage import section_outputs

    out |= {p for section in paper_figures(suite) for p in section_outputs(suite, section)}
    return out


@pytest.mark.parametrize("triviaqa", [False, True], ids=["default", "triviaqa"])
def test_dag_outputs_are_exactly_the_layout_paths(tmp_path: Path, triviaqa: bool) -> None:
    config = REPO / "config" / "config.yaml"
    if triviaqa:  # the default suite with the TriviaQA variant on (off in config.yaml)
        cfg = yaml.safe_load(config.read_text())
        cfg["analysis"]["term_frequency"]["triviaqa"] = {"enabled": True}
        config = tmp_path / "triviaqa.yaml"
        config.write_text(yaml.safe_dump(cfg))
    results = tmp_path / "results"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--configfile", str(config),
         "--config", f"results_dir={results}", "--summary", "--quiet"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    planned = {Path(line.split("\t", 1)[0]) for line in proc.stdout.splitlines()[1:] if "\t" in line}
    suite = load_suite({**load_suite(config).config, "results_dir": str(results)})
    expected = expected_outputs(suite)
    assert planned - expected == set(), "outputs no layout method names"
    assert expected - planned == set(), "layout paths the DAG does not plan"
