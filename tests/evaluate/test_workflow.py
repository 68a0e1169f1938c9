"""The export -> upload -> evaluate -> aggregate rules as Snakemake runs them: the job counts of
the default config, then a real run on trainer-style checkpoints of a tiny suite (training and
data rules excluded with --allowed-rules; the segment markers are there), its report, a rerun
with nothing to do."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from pythia_repro.config import load_suite
from pythia_repro.layout import Layout
from pythia_repro.testing.checkpoints import make_checkpoints, make_suite

POST_RULES = ["export", "upload", "eval_tasks", "evaluate", "aggregate_eval"]


def test_default_config_plans_export_upload_eval_per_checkpoint(tmp_path, repo_root, snakemake, job_counts):
    config = repo_root / "config" / "config.yaml"
    result = snakemake(tmp_path, config, "-n", results_dir=tmp_path / "results")
    assert result.returncode == 0, result.stderr[-3000:]
    counts = job_counts(result.stdout)
    suite = load_suite(config)
    evaluated = sum(len(suite.eval_steps(m.name)) for m in suite.models)
    exported = sum(len(set(suite.eval_steps(m.name)) | {suite.train_iters}) for m in suite.models)
    assert counts["evaluate"] == evaluated == 17  # 4 models x [0, 64, 128, 256] + the intervention's 256
    # Exported too: the bias study's base at the intervention's branch (pythia-micro-deduped step 192).
    assert counts["export"] == counts["upload"] == exported + 1 == sum(len(suite.export_steps(m.name))
                                                                      for m in suite.models)
    assert counts["eval_tasks"] == counts["aggregate_eval"] == 1


@pytest.mark.slow
def test_post_training_rules_run_end_to_end(tmp_path, snakemake, job_counts):
    root = tmp_path / "suite"
    config = make_suite(root, models=[{"size": "pico", "arch": "palm", "data": ["standard"]}],
                        evaluate={"steps": [4], "tasks": ["lambada_heldout"], "num_fewshot": [0], "batch_size": 8})
    make_checkpoints(config, [dict(model="pythia-pico-palm", step=4, zero_stage=0),
                              dict(model="pythia-pico-palm", step=8, zero_stage=2)])
    suite = load_suite(config)
    layout = Layout(suite.root)
    targets = [str(p) for p in (layout.eval_table("csv"), layout.eval_table("parquet"),
                                layout.eval_figure("lambada_heldout", 0),
                                layout.upload_receipt("pythia-pico-palm", 4),
                                layout.upload_receipt("pythia-pico-palm", 8))]
    args = ["--allowed-rules", *POST_RULES, "--cores", "2"]
    dry = snakemake(root, config, "-n", *args, *targets)
    assert dry.returncode == 0, dry.stderr[-3000:]
    # Step 4 is evaluated; step 8, the final one, is exported and uploaded (-> main) only.
    assert job_counts(dry.stdout) == {"export": 2, "upload": 2, "eval_tasks": 1, "evaluate": 1, "aggregate_eval": 1}

    run = snakemake(root, config, *args, *targets)
    assert run.returncode == 0, run.stderr[-5000:]
    receipt = json.loads(Path(targets[4]).read_text())
    assert receipt["target"] == "mirror" and set(receipt["revisions"]) == {"step8", "main"}
    mirror = layout.default_mirror / "models--tiny-org--pythia-pico-palm" / "refs"
    assert sorted(p.name for p in mirror.iterdir()) == ["main", "step4", "step8"]
    frame = pd.read_parquet(targets[1])
    assert set(frame["metric"]) == {"acc", "perplexity"} and set(frame["step"]) == {4}
    assert frame["tokens_seen"].unique().tolist() == [4 * suite.global_batch_size * suite.seq_length]
    record = json.loads(layout.eval_record("pythia-pico-palm", 4).read_text())
    assert record["metadata"]["documents"] == 30

    again = snakemake(root, config, "-n", *args, *targets)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr

    report = root / "report.html"
    made = snakemake(root, config, *args, "--report", str(report), *targets)
    assert made.returncode == 0, made.stderr[-3000:]
    assert "lambada_heldout_0shot.png" in report.read_text(errors="replace")


@pytest.mark.slow  # the paper's DAG: ~20-50 s to build (once per session, shared)
def test_pythia_suite_plans_the_papers_tasks_on_every_checkpoint(pythia_dry_run, job_counts):
    """The Pythia config's DAG: one lm-eval job per checkpoint of every model (154 per model),
    and one figure per task x {0, 5}-shot from the aggregate job."""
    out = pythia_dry_run["out"]
    suite = load_suite(pythia_dry_run["config"])
    layout = Layout(suite.root)
    counts = job_counts(out)
    assert counts["evaluate"] == sum(len(suite.model_checkpoint_steps(m.name)) for m in suite.models)
    planned = set(re.findall(r" evaluate --config \S+ --model (\S+) --step (\d+) ", out))
    assert len([s for m, s in planned if m == "pythia-70m"]) == 154
    assert ("pythia-12b-deduped", "143000") in planned and ("pythia-70m", "0") in planned
    assert counts["eval_tasks"] == counts["aggregate_eval"] == 1
    tasks = ["lambada_openai", "piqa", "winogrande", "wsc", "arc_easy", "arc_challenge", "sciq", "logiqa"]
    aggregate = out[out.index("rule aggregate_eval:"):].split("\n\n", 1)[0]
    figures = {f"{layout.eval_figure(t, n)}" for t in tasks for n in (0, 5)}
    assert figures <= set(re.findall(r"\S+\.png", aggregate))
