"""The data stage of the tiny suite through `snakemake --profile <slurm profile>`: every job a SLURM job.

The run ends with the first training segment of one model: a one-rank job, which reads its time
limit from SLURM to stop before it.
"""

from __future__ import annotations

import re

import pytest

from pythia_repro.layout import Layout

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.timeout(1500)]

# The real workflow, plus one target rule: the whole data stage (data_targets() of data.smk) and
# the first segment of one model (train.smk).
FIRST_SEGMENT = ("pythia-nano", 4)
WRAPPER = """\
include: "{snakefile}"


rule data_stage:
    input:
        data_targets(),
        str(LAYOUT.root / "{segment}"),
"""

# Jobs of the tiny config (2 shards, standard + deduped, one seed): rule -> count.
EXPECTED_JOBS = {
    "synth_corpus": 1,
    "tokenizer": 1,
    "dedup_signatures": 2,
    "dedup_clusters": 1,
    "dedup_apply": 2,
    "tokenize_shard": 4,
    "merge_tokens": 2,
    "order": 2,
    "train_segment": 1,
}


def test_data_stage_runs_as_slurm_jobs(slurm_cluster, slurm_profile, tmp_path, repo_root, tiny_config_path,
                                       snakemake):
    results = tmp_path / "results"
    layout = Layout(results / "tiny")
    first_segment = layout.segment_marker(*FIRST_SEGMENT)
    (tmp_path / "Snakefile").write_text(WRAPPER.format(snakefile=repo_root / "Snakefile",
                                                       segment=first_segment.relative_to(layout.root)))
    # the jobs call `pythia-repro`: the venv's bin is first on PATH (it travels into the jobs with --export=ALL)
    proc = snakemake(tmp_path, tiny_config_path, "--profile", str(slurm_profile), "--executor", "slurm",
                     "--jobs", "4", "data_stage", snakefile=tmp_path / "Snakefile", results_dir=results,
                     env=slurm_cluster.env(), timeout=1400)
    logs = "\n".join(
        f"==> {p} <==\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(results.rglob("logs/**/*.log"))
    )
    assert proc.returncode == 0, f"{proc.stdout[-8000:]}\n{proc.stderr[-8000:]}\n{logs}"

    # every job of the stage went through sbatch: slurmctld's records (COMPLETED, the plugin's
    # rule_<name> comment, our work dir) and the plugin's per-job SLURM logs
    by_rule = slurm_cluster.snakemake_jobs(tmp_path)
    assert {rule: len(recs) for rule, recs in by_rule.items()} == EXPECTED_JOBS, slurm_cluster.jobs()
    plugin_logs = {p.stem for p in (tmp_path / ".snakemake" / "slurm_logs").rglob("*.log")}
    for rule, recs in by_rule.items():
        for rec in recs:
            assert rec["JobState"] == "COMPLETED" and rec["ExitCode"] == "0:0", rec
            assert rec["JobId"] in plugin_logs, f"{rule}: no plugin log for SLURM job {rec['JobId']}"
    # ...and ran there through the plugin's jobstep executor, on the cluster's node
    for log in (tmp_path / ".snakemake" / "slurm_logs").rglob("*.log"):
        text = log.read_text(errors="replace")
        assert "--executor slurm-jobstep" in text and f"Host: {slurm_cluster.hostname}" in text, log
    assert re.search(r"submitted with SLURM jobid \d+", proc.stdout + proc.stderr)

    # the stage's outputs are there: data order per variant, dedup report
    for variant in ("standard", "deduped"):
        assert len(list(layout.variant_dir(variant).glob("*_shuffle_idx.npy"))) == 1, variant
    assert layout.dedup_report.is_file()
    # the training segment ran as a SLURM job and knew the job's time limit
    assert first_segment.is_file()
    train_log = layout.log("train", "pythia-nano/end4").read_text()
    assert "[launch] SLURM time limit at" in train_log, train_log[-3000:]
