"""A published suite gives the same results as the suite that trained it.

A tiny suite is trained, its checkpoints exported and published to an offline Hugging Face cache
(our mirror layout, one branch per step), and its training order written as pre-shuffled rows.
The published-suite DAG then fetches those revisions with huggingface_hub under HF_HUB_OFFLINE=1
and runs the case studies: no train, export or upload job in it, and the arithmetic evaluation,
memorization scores and term counts equal the trained suite's on the same checkpoints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from pythia_repro.config import load_suite
from pythia_repro.data.indexed import IndexedDatasetBuilder

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
MODEL = "pythia-pico"
STEPS = [4, 8]
ANALYSIS = {
    "memorization": {"steps": [8], "k": 8, "l": 8, "batch_size": 16, "bin_size": 4},
    "term_frequency": {"steps": STEPS, "ops": ["plus"], "shots": [0], "x1_values": list(range(12)), "x2_per_x1": 1},
}
ANALYSIS_RULES = ["memorization", "memorization_merge", "term_counts", "term_counts_merge", "arithmetic_tasks",
                  "arithmetic_eval"]


def _snakemake(config: Path, rules: list[str], targets: list[str], *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--configfile", str(config),
           "--allowed-rules", *rules, "--cores", "2", *extra, *targets]
    return subprocess.run(cmd, cwd=config.parent, env=env, capture_output=True, text=True, timeout=900)


def _targets(suite) -> list[str]:
    layout = suite.layout
    out = [layout.memorization_scores(MODEL, 8), layout.term_counts("standard")]
    out += [layout.arithmetic_record(MODEL, s) for s in STEPS]
    return [str(p) for p in out]


def _write_preshuffled(suite, prefix: Path) -> None:
    """The trained suite's training order as EleutherAI publishes it: row j = training sample j."""
    from pythia_repro.analysis.stage import training_order

    order = training_order(suite, "standard", suite.seed)
    with IndexedDatasetBuilder(f"{prefix}.bin", np.uint16) as builder:
        for row in order.samples(0, len(order)):
            builder.add_document(row)
        builder.finalize(f"{prefix}.idx")


def test_published_suite_equals_the_trained_one(tmp_path, tiny_suite, run_cli):
    # Room for 16 generated arithmetic tokens; number words so that the term counts are not empty.
    config = tiny_suite(tmp_path / "trained", seq_length=32, numbers=True)
    cfg = yaml.safe_load(config.read_text())
    cfg.update(interventions=[], analysis=ANALYSIS, evaluate={"steps": STEPS, "tasks": []},
               upload={"target": "mirror", "namespace": "org"})
    config.write_text(yaml.safe_dump(cfg))
    trained = load_suite(config)
    run_cli("train", "--config", str(config), "--model", MODEL, "--until-step", "8")
    for step in STEPS:
        export = str(trained.layout.export_dir(MODEL, step))
        run_cli("export", "--config", str(config), "--model", MODEL, "--step", str(step), "--output", export)
        run_cli("upload", "--config", str(config), "--model", MODEL, "--step", str(step), "--input", export,
                "--receipt", str(trained.layout.upload_receipt(MODEL, step)))
    done = _snakemake(config, ANALYSIS_RULES, _targets(trained))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    preshuffled = tmp_path / "preshuffled" / "document"
    preshuffled.parent.mkdir()
    _write_preshuffled(trained, preshuffled)
    published_cfg = {
        **{k: cfg[k] for k in ("seed", "name_prefix", "sizes", "training", "analysis", "evaluate")},
        "suite": "published", "results_dir": str(tmp_path / "published"),
        "corpus": {"source": "none"},
        "tokenizer": {"source": "file", "path": str(trained.layout.tokenizer)},
        "data": {"variants": ["standard"], "seq_length": cfg["data"]["seq_length"],
                 "orders": {"standard": {"preshuffled": str(preshuffled)}}},
        "models": [{"size": "pico", "data": ["standard"], "source": "hub", "repo": f"org/{MODEL}"}],
        "fetch": {"cache_dir": str(trained.layout.default_mirror)},
        "upload": {"target": "none"},
    }
    published_config = tmp_path / "published.yaml"
    published_config.write_text(yaml.safe_dump(published_cfg))
    published = load_suite(published_config)

    plan = _snakemake(published_config, ["fetch_revision", *ANALYSIS_RULES], _targets(published), "-n")
    assert plan.returncode == 0, plan.stdout[-3000:] + plan.stderr[-3000:]
    for rule in ("train_segment", "export", "upload", "tokenize_shard", "order"):
        assert f"rule {rule}:" not in plan.stdout
    assert "rule fetch_revision:" in plan.stdout
    run = _snakemake(published_config, ["fetch_revision", *ANALYSIS_RULES], _targets(published))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    ours, theirs = trained.layout, published.layout
    assert pq.read_table(theirs.memorization_scores(MODEL, 8)).equals(pq.read_table(ours.memorization_scores(MODEL, 8)))
    assert pq.read_table(theirs.term_counts("standard")).equals(pq.read_table(ours.term_counts("standard")))
    for step in STEPS:
        a = json.loads(Path(ours.arithmetic_record(MODEL, step)).read_text())["runs"][0]["results"]
        b = json.loads(Path(theirs.arithmetic_record(MODEL, step)).read_text())["runs"][0]["results"]
        assert a == b
    fetched = json.loads((theirs.export_dir(MODEL, 8) / "export.json").read_text())
    assert fetched["source"] == "hub" and fetched["repo"] == f"org/{MODEL}" and fetched["revision"] == "step8"
