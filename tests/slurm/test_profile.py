"""profiles/slurm (the real-cluster profile) drives a real DAG: a dry run of the tiny suite with
`--profile profiles/slurm` gives every rule the resources, threads and groups the profile sets."""

from __future__ import annotations

import re

import pytest
import yaml


@pytest.fixture(scope="module")
def profile(repo_root) -> dict:
    return yaml.safe_load((repo_root / "profiles" / "slurm" / "config.yaml").read_text())


# Rules only a published suite has (its revisions are fetched, not trained).
PUBLISHED_ONLY = {"fetch_revision"}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory, repo_root, tiny_config_path, snakemake) -> str:
    """`snakemake -n` of the tiny suite, its case studies switched on, with the SLURM profile: no
    cluster needed for a dry run."""
    tmp = tmp_path_factory.mktemp("slurm_profile")
    cfg = yaml.safe_load(tiny_config_path.read_text())
    cfg["interventions"] = [{"name": "genderswap", "base": "pythia-nano-deduped", "branch_fraction": 0.5,
                             "substitution": "gender_swap"}]
    cfg["analysis"] = {"memorization": {"steps": [8], "k": 8, "l": 8},
                       "term_frequency": {"steps": [4, 8], "shots": [0]},
                       "gender_bias": {"enabled": True}}
    config = tmp / "tiny_analysis.yaml"
    config.write_text(yaml.safe_dump(cfg))
    # a dry run caps threads at --cores; on the cluster it is each job's own
    proc = snakemake(tmp, config, "--profile", str(repo_root / "profiles" / "slurm"), "--cores", "64",
                     "-n", results_dir=tmp / "results", timeout=300)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    return proc.stdout + proc.stderr


def _resources(out: str, rule: str) -> dict[str, str]:
    m = re.search(rf"rule {rule}:\n(?:\s+\w+:.*\n)*?\s+resources: (.*)\n", out)
    assert m, f"rule {rule} not in the dry run"
    return dict(kv.split("=", 1) for kv in m.group(1).split(", "))


def test_every_rule_gets_the_profiles_resources(dry_run, profile):
    assert len(profile["set-resources"]) >= 10
    for rule, resources in profile["set-resources"].items():
        if rule in PUBLISHED_ONLY:
            continue
        planned = _resources(dry_run, rule)
        for name, value in resources.items():
            assert planned.get(name) == str(value), f"{rule}: {name}={planned.get(name)}, profile says {value}"


def test_set_threads_reach_the_jobs(dry_run, profile):
    for rule, threads in profile["set-threads"].items():
        m = re.search(rf"rule {rule}:\n(?:\s+\w+:.*\n)*?\s+threads: (\d+)\n", dry_run)
        assert m and int(m.group(1)) == threads, rule
    assert "--workers 32" in dry_run  # tokenize_shard's threads reach its command


def test_data_rules_get_their_resources(dry_run):
    assert _resources(dry_run, "tokenize_shard")["mem_mb"] == "8000"
    assert _resources(dry_run, "order")["mem_mb"] == "8000"
    assert _resources(dry_run, "dedup_clusters")["mem_mb"] == "32000"
    synth = _resources(dry_run, "synth_corpus")
    assert synth["runtime"] == "30"


def test_train_and_post_rules(dry_run, profile):
    train = _resources(dry_run, "train_segment")
    assert train["tasks_per_gpu"] == "1" and train["runtime"] == "1440"
    # One rank (tiny.yaml): the executor's own srun step, no `mpi` (the plugin wants 2+ tasks for it),
    # and no --signal, which would reach Snakemake in that step (launch stops before the limit itself).
    assert "mpi" not in train and "--signal" not in train.get("slurm_extra", "")
    # export -> upload -> evaluate of a checkpoint: one group job per the profile's `groups`
    assert set(profile["groups"].values()) == {"post"} and "Group job post" in dry_run
