"""The local SLURM cluster itself: sbatch, srun with two tasks, and Snakemake's SLURM executor."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(300)]


def test_node_idle_with_two_cpus(slurm_cluster):
    out = slurm_cluster.run("sinfo", "--noheader", "--Node", "--format=%N %c %P").stdout.split()
    assert out[:2] == [slurm_cluster.hostname, "2"], out
    assert out[2].rstrip("*") == slurm_cluster.partition


def test_srun_two_tasks_inside_sbatch(slurm_cluster, tmp_path):
    """What the training stage relies on: two ranks on this node, SLURM_PROCID 0 and 1, one job."""
    out = tmp_path / "ranks.out"
    script = tmp_path / "ranks.sh"
    script.write_text(
        textwrap.dedent("""\
        #!/bin/bash
        #SBATCH --ntasks=2
        #SBATCH --cpus-per-task=1
        srun --ntasks=2 bash -c 'echo "rank=$SLURM_PROCID ntasks=$SLURM_NTASKS job=$SLURM_JOB_ID"'
        """)
    )
    job_id = slurm_cluster.run("sbatch", "--parsable", f"--output={out}", str(script), cwd=tmp_path).stdout.strip()
    rec = slurm_cluster.wait_job(job_id)
    assert rec["JobState"] == "COMPLETED", (rec, out.read_text() if out.exists() else "")
    lines = sorted(out.read_text().split())
    assert [ln for ln in lines if ln.startswith("rank=")] == ["rank=0", "rank=1"], lines
    assert f"job={job_id}" in lines and "ntasks=2" in lines


def test_srun_two_tasks_inside_salloc(slurm_cluster):
    proc = slurm_cluster.run(
        "salloc", "--ntasks=2", "srun", "--ntasks=2", "bash", "-c", "echo rank=$SLURM_PROCID", timeout=120
    )
    assert sorted(re.findall(r"rank=\d", proc.stdout)) == ["rank=0", "rank=1"], proc.stdout + proc.stderr


MINIMAL_SNAKEFILE = """\
rule all:
    input: "b.txt", "ranks.txt"

rule first:
    output: "a.txt"
    shell: "echo $SLURM_JOB_ID > {output}"

rule second:
    input: "a.txt"
    output: "b.txt"
    shell: "cat {input} > {output}; echo $SLURM_JOB_ID >> {output}"

# How train_segment runs (profiles/slurm): `mpi` makes the jobstep run the command in the batch
# allocation instead of a one-task srun, and the command starts its own ranks with srun.
rule ranks:
    output: "ranks.txt"
    resources: mpi="srun", tasks=2
    shell: "srun --ntasks=2 bash -c 'echo $SLURM_PROCID' | sort > {output}"
"""


@pytest.mark.slow
def test_snakemake_slurm_executor_minimal(slurm_cluster, slurm_profile, tmp_path):
    """Two chained rules through snakemake-executor-plugin-slurm: each ran as its own SLURM job."""
    (tmp_path / "Snakefile").write_text(MINIMAL_SNAKEFILE)
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", str(slurm_profile), "--jobs", "2"],
        cwd=tmp_path,
        env=slurm_cluster.env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr + "\n" + slurm_cluster.logs(30)
    first, second = (tmp_path / "b.txt").read_text().split()
    assert first.isdigit() and second.isdigit() and first != second
    assert (tmp_path / "ranks.txt").read_text().split() == ["0", "1"]
    assert_ran_as_slurm_jobs(slurm_cluster, tmp_path, {"first": [first], "second": [second], "ranks": []})


def assert_ran_as_slurm_jobs(cluster, workdir: Path, expected: dict[str, list[str]]) -> dict[str, list[str]]:
    """Every rule in ``expected`` ran as COMPLETED SLURM job(s) submitted by the plugin from ``workdir``.

    ``expected`` maps rule name -> SLURM job ids the jobs recorded themselves (may be empty). Evidence:
    slurmctld's job records (the plugin's comment ``rule_<name>...``, state, work dir) and the plugin's
    per-job logs ``.snakemake/slurm_logs/rule_<name>/.../<jobid>.log``. Returns rule -> job ids found.
    """
    by_rule = cluster.snakemake_jobs(workdir)
    logs = {p.stem for p in (workdir / ".snakemake" / "slurm_logs").rglob("*.log")}
    found = {}
    for rule, ids in expected.items():
        assert rule in by_rule, f"no SLURM job for rule {rule}; jobs: {cluster.jobs()}"
        for rec in by_rule[rule]:
            assert rec["JobState"] == "COMPLETED", rec
            assert rec["JobId"] in logs, f"{rule}: no plugin log for SLURM job {rec['JobId']} ({sorted(logs)})"
        found[rule] = [rec["JobId"] for rec in by_rule[rule]]
        for job_id in ids:
            assert job_id in found[rule], f"{rule}: job {job_id} not among {found[rule]}"
    return found
