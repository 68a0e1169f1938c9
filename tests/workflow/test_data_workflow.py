"""The data stage as Snakemake runs it: the DAG of the shipped configs, config errors at DAG-build
time, and a real run of the tiny config (both variants, then a rerun with nothing to do).

Snakemake runs in a temporary working directory with `results_dir` there, so nothing lands in
the checkout; `pythia-repro` in the jobs is this interpreter's.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import yaml

from pythia_repro.config import load_suite
from pythia_repro.layout import Layout

DATA_RULES = ("synth_corpus", "tokenizer", "dedup_signatures", "dedup_clusters", "dedup_apply",
              "tokenize_shard", "merge_tokens", "order")


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def order_files(suite, variant: str, seed: int) -> list[Path]:
    """GPT-NeoX's doc, sample and shuffle index maps of one variant and seed."""
    return Layout(suite.root).index_maps(variant, suite.num_samples, suite.seq_length, seed)


def idx_items(prefix: Path) -> int:
    """Documents in a GPT-NeoX MMapIndexedDataset (.idx header: magic, version, dtype, count)."""
    header = prefix.with_suffix(".idx").read_bytes()[:26]
    assert header[:9] == b"MMIDIDX\x00\x00"
    return struct.unpack("<Q", header[18:26])[0]


# ----- (a) the DAG of the shipped configs ---------------------------------------------------------
def test_default_config_dry_run(tmp_path, repo_root, snakemake, job_counts):
    run = snakemake(tmp_path, repo_root / "config" / "config.yaml", "-n", "--printshellcmds", "--cores", "1",
                    results_dir=tmp_path / "results")
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout + run.stderr
    counts = job_counts(out)
    # 2 shards; standard + deduped; one seed
    expected = {"synth_corpus": 1, "tokenizer": 1, "dedup_signatures": 2, "dedup_clusters": 1,
                "dedup_apply": 2, "tokenize_shard": 4, "merge_tokens": 2, "order": 2}
    assert {rule: counts.get(rule, 0) for rule in DATA_RULES} == expected
    suite = load_suite(repo_root / "config" / "config.yaml")
    for variant in ("standard", "deduped"):
        assert "pile_text_document_train_0_indexmap_4117ns_128sl_1234s_shuffle_idx.npy" in out
        assert f"{variant}/pile_text_document.bin" in out
    assert "synth-corpus --config" in out and "dedup-clusters --config" in out
    assert "--on-malformed error" in out  # corpus.on_malformed reaches the verbs without --config
    assert suite.num_samples == 4117
    assert not (tmp_path / "results").exists()  # a dry run writes nothing, not even suite.yaml


def test_an_inconsistent_config_stops_the_dag_build_naming_key_and_file(tmp_path, repo_root, snakemake):
    config = yaml.safe_load((repo_root / "config" / "config.yaml").read_text())
    config["training"]["micro_batch_size"] = 3  # 16 is not a multiple of 3: the trainer would find out
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    run = snakemake(tmp_path, bad, "-n", "--cores", "1", results_dir=tmp_path / "results")
    assert run.returncode != 0
    # named as the user gave it, relative to the working directory
    assert "bad.yaml: training.micro_batch_size: 3 per rank x 1 ranks does not divide" in run.stdout + run.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.slow  # the paper's DAG: ~20-50 s to build (once per session, shared)
def test_pythia_config_dry_run(pythia_dry_run, job_counts):
    """The paper's suite: 30 Pile shards -> 30 MinHash and 60 tokenize jobs, GPT-NeoX file names."""
    out, pile = pythia_dry_run["out"], pythia_dry_run["pile"]
    counts = job_counts(out)
    expected = {"synth_corpus": 0, "tokenizer": 1, "dedup_signatures": 30, "dedup_clusters": 1,
                "dedup_apply": 30, "tokenize_shard": 60, "merge_tokens": 2, "order": 2}
    assert {rule: counts.get(rule, 0) for rule in DATA_RULES} == expected
    # ceil(143000 x 1024 x 1.005) samples of 2048 tokens, seed 1234: GPT-NeoX's index-map names
    assert "pile_text_document_train_0_indexmap_147164160ns_2048sl_1234s_doc_idx.npy" in out
    assert f"--input {pile}/00.jsonl.zst" in out


def test_pythia_config_without_the_pile_names_the_missing_files(tmp_path, repo_root, snakemake):
    run = snakemake(tmp_path, repo_root / "config" / "pythia.yaml", "-n", "--cores", "1",
                    results_dir=tmp_path / "results")
    assert run.returncode != 0
    out = run.stdout + run.stderr
    assert "Missing input files" in out and "/data/pile/train/00.jsonl.zst" in out


# ----- (b) config errors stop the DAG build and name the key -------------------------------------
def _edit(tiny: Path, change) -> dict:
    config = yaml.safe_load(tiny.read_text())
    change(config)
    return config


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["corpus"].update(on_malformd="skip"), "'on_malformd' was unexpected"),
        (lambda c: c["data"].update(seq_length=4), "data.seq_length: 4 is less than the minimum of 8"),
        (lambda c: c["corpus"]["synthetic"].update(exact_duplicate_rate=1.5),
         "corpus.synthetic.exact_duplicate_rate: 1.5 is greater than the maximum of 1"),
        (lambda c: c["corpus"].update(source="files"), "corpus.files: required when corpus.source is files"),
        (lambda c: c["tokenizer"].update(source="file"), "tokenizer.path: required when tokenizer.source is file"),
    ],
    ids=["unknown-key", "seq-length", "rate", "files", "tokenizer-path"],
)
def test_bad_config_fails_naming_the_key(tmp_path, tiny_config_path, snakemake, change, message):
    path = write_config(tmp_path / "bad.yaml", _edit(tiny_config_path, change))
    run = snakemake(tmp_path, path, "-n", "--cores", "1", results_dir=tmp_path / "results")
    assert run.returncode != 0
    assert message in run.stdout + run.stderr


# ----- (c) a real run of the data stage -----------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_config_path, snakemake):
    workdir = tmp_path_factory.mktemp("tiny-data")
    config = yaml.safe_load(tiny_config_path.read_text())
    config["results_dir"] = str(workdir / "results")
    suite = load_suite(config)
    seeds = sorted({m.seed for m in suite.models})
    targets = [f for v in ("standard", "deduped") for s in seeds for f in order_files(suite, v, s)]
    report = Layout(suite.root).dedup_report
    targets.append(report)
    run = snakemake(workdir, tiny_config_path, "--cores", "2", *map(str, targets), results_dir=workdir / "results")
    return {"workdir": workdir, "suite": suite, "targets": targets, "report": report, "run": run,
            "config": tiny_config_path}


def test_data_stage_runs(tiny_run):
    run = tiny_run["run"]
    logs = sorted((tiny_run["suite"].root / "logs" / "data").glob("*.log"))
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in logs if p.stat().st_size)
    assert run.returncode == 0, run.stderr[-4000:] + "\n" + tails
    for target in tiny_run["targets"]:
        assert Path(target).is_file(), target


def test_deduped_variant_is_smaller(tiny_run):
    suite = tiny_run["suite"]
    if tiny_run["run"].returncode:
        pytest.skip("data stage failed (see test_data_stage_runs)")
    layout = Layout(suite.root)
    manifest = json.loads(layout.corpus_manifest.read_text())
    standard, deduped = layout.data_prefix("standard"), layout.data_prefix("deduped")
    assert deduped.with_suffix(".bin").stat().st_size < standard.with_suffix(".bin").stat().st_size
    # one item per non-empty document (GPT-NeoX drops empty ones); dedup drops at most the planted copies
    empty = len(manifest["train"]["empty_documents"])
    assert manifest["train"]["documents"] == 200 and empty >= 1
    assert idx_items(standard) == 200 - empty
    removable = manifest["duplicates"]["removable"]
    assert 200 - empty - removable <= idx_items(deduped) <= 200 - empty - len(manifest["duplicates"]["exact_pairs"])
    json.loads(tiny_run["report"].read_text())
    for variant in ("standard", "deduped"):
        doc, sample, shuffle = (np.load(f) for f in order_files(suite, variant, suite.seed))
        assert len(shuffle) >= suite.num_samples and sample.shape[1] == 2 and len(doc) > 0


def test_rerun_has_nothing_to_do(tiny_run, snakemake):
    if tiny_run["run"].returncode:
        pytest.skip("data stage failed (see test_data_stage_runs)")
    run = snakemake(tiny_run["workdir"], tiny_run["config"], "-n", "--cores", "2", *map(str, tiny_run["targets"]),
                    results_dir=tiny_run["workdir"] / "results")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Nothing to be done" in run.stdout + run.stderr
