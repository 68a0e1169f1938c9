"""The export -> upload -> evaluate -> aggregate rules as Snakemake runs them: the job counts of
the default config, then a real run on trainer-style checkpoints of a tiny suite (training and
data rules excluded with --allowed-rules; the segment markers are there), its report, a rerun
with nothing to do."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml
from ckpt_factory import make_checkpoints, make_suite

from pythia_repro.config import load_suite

REPO = Path(__file__).resolve().parents[2]
POST_RULES = ["export", "upload", "eval_tasks", "evaluate", "aggregate_eval"]


def snakemake(workdir: Path, configfile: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--configfile",
           str(configfile), *args]
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)


def job_counts(output: str) -> dict[str, int]:
    table = output.split("Job stats:", 1)[1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE) if m[1] != "total"}


def test_default_config_plans_export_upload_eval_per_checkpoint(tmp_path):
    config = REPO / "config" / "config.yaml"
    result = snakemake(tmp_path, config, "-n", "--config", f"results_dir={tmp_path / 'results'}")
    assert result.returncode == 0, result.stderr[-3000:]
    counts = job_counts(result.stdout)
    suite = load_suite(config)
    evaluated = sum(len(suite.eval_steps(m.name)) for m in suite.models)
    exported = sum(len(set(suite.eval_steps(m.name)) | {suite.train_iters}) for m in suite.models)
    assert counts["evaluate"] == evaluated == 17  # 4 models x [0, 64, 128, 256] + the intervention's 256
    assert counts["export"] == counts["upload"] == exported
    assert counts["eval_tasks"] == counts["aggregate_eval"] == 1


def test_post_training_rules_run_end_to_end(tmp_path):
    root = tmp_path / "suite"
    config = make_suite(root, models=[{"size": "pico", "arch": "palm", "data": ["standard"]}],
                        evaluate={"steps": [4], "tasks": ["lambada_heldout"], "num_fewshot": [0], "batch_size": 8})
    make_checkpoints(config, [dict(model="pythia-pico-palm", step=4, zero_stage=0),
                              dict(model="pythia-pico-palm", step=8, zero_stage=2)])
    suite = load_suite(config)
    base = str(suite.root)
    targets = [f"{base}/eval/results.csv", f"{base}/eval/results.parquet",
               f"{base}/eval/figures/lambada_heldout_0shot.png",
               f"{base}/upload/pythia-pico-palm/step4.json", f"{base}/upload/pythia-pico-palm/step8.json"]
    args = ["--allowed-rules", *POST_RULES, "--cores", "2"]
    dry = snakemake(root, config, "-n", *args, *targets)
    assert dry.returncode == 0, dry.stderr[-3000:]
    # Step 4 is evaluated; step 8, the final one, is exported and uploaded (-> main) only.
    assert job_counts(dry.stdout) == {"export": 2, "upload": 2, "eval_tasks": 1, "evaluate": 1, "aggregate_eval": 1}

    run = snakemake(root, config, *args, *targets)
    assert run.returncode == 0, run.stderr[-5000:]
    receipt = json.loads(Path(targets[4]).read_text())
    assert receipt["target"] == "mirror" and set(receipt["revisions"]) == {"step8", "main"}
    mirror = suite.root / "hub-mirror" / "models--tiny-org--pythia-pico-palm" / "refs"
    assert sorted(p.name for p in mirror.iterdir()) == ["main", "step4", "step8"]
    frame = pd.read_parquet(targets[1])
    assert set(frame["metric"]) == {"acc", "perplexity"} and set(frame["step"]) == {4}
    assert frame["tokens_seen"].unique().tolist() == [4 * suite.global_batch_size * suite.seq_length]
    record = json.loads((suite.root / "eval" / "pythia-pico-palm" / "step4.json").read_text())
    assert record["metadata"]["documents"] == 30

    again = snakemake(root, config, "-n", *args, *targets)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr

    report = root / "report.html"
    made = snakemake(root, config, *args, "--report", str(report), *targets)
    assert made.returncode == 0, made.stderr[-3000:]
    assert "lambada_heldout_0shot.png" in report.read_text(errors="replace")


def test_config_of_the_pythia_suite_plans_harness_tasks(tmp_path):
    """The Pythia config evaluates the paper's tasks zero- and five-shot on every checkpoint."""
    cfg = yaml.safe_load((REPO / "config" / "pythia.yaml").read_text())
    suite = load_suite(cfg)
    ev = suite.config["evaluate"]
    assert ev["tasks"] == ["lambada_openai", "piqa", "winogrande", "wsc", "arc_easy", "arc_challenge", "sciq",
                           "logiqa"]
    assert ev["num_fewshot"] == [0, 5]
    assert all(len(suite.eval_steps(m.name)) == len(suite.model_checkpoint_steps(m.name)) for m in suite.models)
    assert len(suite.eval_steps("pythia-70m")) == 154
