"""profiles/slurm (the real-cluster profile) parses and gives each rule the intended SLURM resources."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROFILE = REPO / "profiles" / "slurm"


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> str:
    """`snakemake -n` of the tiny suite with the SLURM profile: no cluster needed for a dry run."""
    tmp = tmp_path_factory.mktemp("slurm_profile")
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--profile",
        str(PROFILE),
        "--configfile",
        str(REPO / "tests" / "configs" / "tiny.yaml"),
        "--config",
        f"results_dir={tmp / 'results'}",
        "--cores",
        "64",  # a dry run caps threads at --cores; on the cluster it is each job's own
        "-n",
    ]
    proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    return proc.stdout + proc.stderr


def _resources(out: str, rule: str) -> dict[str, str]:
    m = re.search(rf"rule {rule}:\n(?:\s+\w+:.*\n)*?\s+resources: (.*)\n", out)
    assert m, f"rule {rule} not in the dry run"
    return dict(kv.split("=", 1) for kv in m.group(1).split(", "))


def test_profile_settings():
    import yaml

    cfg = yaml.safe_load((PROFILE / "config.yaml").read_text())
    assert cfg["executor"] == "slurm"
    assert cfg["rerun-incomplete"] is True and cfg["latency-wait"] >= 60 and cfg["retries"] >= 1
    assert {"runtime", "mem_mb"} <= set(cfg["default-resources"])
    assert cfg["groups"] == {"export": "post", "upload": "post", "evaluate": "post"}


def test_data_rules_get_their_resources(dry_run):
    assert _resources(dry_run, "tokenize_shard")["mem_mb"] == "8000"
    assert _resources(dry_run, "order")["mem_mb"] == "8000"
    assert _resources(dry_run, "dedup_clusters")["mem_mb"] == "32000"
    assert "--workers 32" in dry_run  # set-threads
    synth = _resources(dry_run, "synth_corpus")
    assert synth["runtime"] == "30"


def test_train_and_post_rules(dry_run):
    train = _resources(dry_run, "train_segment")
    assert train["tasks_per_gpu"] == "1" and train["runtime"] == "1440"
    # One rank (tiny.yaml): the executor's own srun step, no `mpi` (the plugin wants 2+ tasks for it),
    # and no --signal, which would reach Snakemake in that step (launch stops before the limit itself).
    assert "mpi" not in train and "--signal" not in train.get("slurm_extra", "")
    assert "Group job post" in dry_run
