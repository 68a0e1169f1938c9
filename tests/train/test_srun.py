"""A training segment on 2 ranks inside a SLURM allocation: `launch` runs srun, ranks come from SLURM_*.

Uses the local single-node cluster of tests/slurm/harness.py. The first job gets SLURM's warning
signal (SIGUSR1, here raised by each rank itself after step 3, through pythia_repro.testing.step_signal):
it must checkpoint off the schedule and fail with exit code 75; resubmitting the same command finishes
the segment from that checkpoint. (2 ranks = 1 rank numerically: test_multirank.py.)
A one-rank job with a 2-minute time limit: `launch` reads the limit from SLURM and, with
--stop-before-limit 110, the trainer checkpoints and exits 75 about 10 s in, before SLURM kills it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pythia_repro.config import load_suite
from pythia_repro.layout import Layout
from pythia_repro.train.checkpoint import complete_checkpoints
from pythia_repro.train.metrics import read_metrics
from pythia_repro.train.trainer import PREEMPTED

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.timeout(300)]

MODEL = "pythia-pico"


def _submit(cluster, workdir: Path, command: str, env: dict | None = None, ntasks: int = 2,
            sbatch_args: tuple[str, ...] = ()) -> str:
    script = workdir / "job.sh"
    exports = "".join(f"export {k}={v}\n" for k, v in (env or {}).items())
    script.write_text(f"#!/bin/bash\n#SBATCH --ntasks={ntasks}\n#SBATCH --cpus-per-task=1\n{exports}{command}\n")
    out = f"--output={workdir / 'job.out'}"
    return cluster.run("sbatch", "--parsable", out, *sbatch_args, str(script), cwd=workdir).stdout.strip()


def _sbatch(cluster, workdir: Path, command: str, env: dict | None = None) -> tuple[dict, str]:
    record = cluster.wait_job(_submit(cluster, workdir, command, env), timeout=240)
    out = workdir / "job.out"
    return record, out.read_text() if out.exists() else ""


def test_two_ranks_under_srun_resume_after_sigusr1(slurm_cluster, tmp_path, tiny_suite) -> None:
    config = tiny_suite(tmp_path / "srun")
    args = f"launch --config {config} --model {MODEL} --until-step 4 --ranks 2 --threads 1 --no-tensorboard"
    # The first job's ranks each send themselves SLURM's warning signal after step 3.
    signalled = f"{sys.executable} -m pythia_repro.testing.step_signal 3 USR1 {args}"
    launch = f"{sys.executable} -m pythia_repro.cli {args}"
    layout = Layout(load_suite(config).root)

    record, log = _sbatch(slurm_cluster, tmp_path, signalled)
    assert record["JobState"] == "FAILED" and record["ExitCode"].startswith(f"{PREEMPTED}:"), (record, log)
    assert "[launch] srun --ntasks=2" in log, log
    ckpts = complete_checkpoints(layout.checkpoints_dir(MODEL))
    assert ckpts[3]["scheduled"] is False and ckpts[3]["world_size"] == 2, log
    assert not layout.segment_marker(MODEL, 4).exists()

    record, log = _sbatch(slurm_cluster, tmp_path, launch)
    assert record["JobState"] == "COMPLETED", (record, log)
    assert "resumed at step 3" in log
    assert layout.segment_marker(MODEL, 4).is_file()
    assert len(list(layout.checkpoint(MODEL, 4).glob("*optim_states.pt"))) == 2

    rows = read_metrics(layout.metrics(MODEL))
    assert [r["step"] for r in rows] == [1, 2, 3, 4], "a resumed step was logged twice"
    assert all(r["loss"] > 0 and r["grad_norm"] > 0 for r in rows)


def test_one_rank_stops_before_the_slurm_time_limit(slurm_cluster, tmp_path, tiny_suite) -> None:
    steps = 100_000  # far more than fit in the job; no checkpoint until the end
    # Checkpoints at 0 and the end only: however late a loaded machine reaches the deadline, the
    # stop is off the schedule (with step 1 scheduled, a slow start made it a scheduled one).
    config = tiny_suite(tmp_path / "one", train_iters=steps, segment_steps=steps,
                        checkpoints={"log_spaced_until": 0, "every": steps})
    layout = Layout(load_suite(config).root)
    launch = (f"{sys.executable} -m pythia_repro.cli launch --config {config} --model {MODEL}"
              f" --until-step {steps} --threads 1 --no-tensorboard --stop-before-limit 110")
    job = _submit(slurm_cluster, tmp_path, launch, ntasks=1, sbatch_args=("--time=2",))
    record = slurm_cluster.wait_job(job, timeout=240)
    log = (tmp_path / "job.out").read_text()

    assert "[launch] SLURM time limit at" in log and "[train] time limit near" in log, log[-3000:]
    assert record["JobState"] == "FAILED" and record["ExitCode"].startswith(f"{PREEMPTED}:"), (record, log)
    ckpts = complete_checkpoints(layout.checkpoints_dir(MODEL))
    stops = [step for step, manifest in ckpts.items() if manifest["scheduled"] is False]
    assert len(stops) == 1 and 0 < stops[0] < steps, (sorted(ckpts), log[-3000:])
    assert ckpts[stops[0]]["reason"] == "time limit near"
    assert len(read_metrics(layout.metrics(MODEL))) == stops[0]
    assert not layout.segment_marker(MODEL, steps).exists()
