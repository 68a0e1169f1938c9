"""Where this process sits in a training job, and how a job of N ranks is started.

A worker (`pythia-repro train`) learns its rank from the launcher's environment:
- torchrun / the DeepSpeed launcher: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT;
- `srun` (one task per rank): SLURM_PROCID, SLURM_STEP_NUM_TASKS (or SLURM_NTASKS),
  SLURM_LOCALID, master = the step's first node, port derived from the job id;
- nothing: a single rank in this process.
`choose_launcher` picks the launcher for a job of N ranks: srun inside a SLURM allocation,
torchrun on one machine, or none for a single rank. `slurm_job_end_time` tells when the SLURM
job hits its time limit, so that training can checkpoint before it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime

from pythia_repro.errors import PythiaReproError


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 0
    launcher: str = "none"  # none | torchrun | slurm


def expand_hostlist(hostlist: str) -> list[str]:
    """SLURM's compact host list ('gpu[01-03,07],login1') as names, without needing scontrol."""
    hosts: list[str] = []
    for part in re.findall(r"[^,\[]+(?:\[[^\]]*\])?[^,]*", hostlist):
        match = re.fullmatch(r"([^\[]*)\[([^\]]*)\](.*)", part)
        if not match:
            hosts.append(part)
            continue
        prefix, ranges, suffix = match.groups()
        for item in ranges.split(","):
            lo, _, hi = item.partition("-")
            if not hi:
                hosts.append(f"{prefix}{lo}{suffix}")
                continue
            for i in range(int(lo), int(hi) + 1):
                hosts.append(f"{prefix}{i:0{len(lo)}d}{suffix}")
    return hosts


def _slurm_master_port(env: dict) -> int:
    # Every task computes the same port from the job id without talking to the others.
    return 20000 + int(env.get("SLURM_JOB_ID", "0")) % 20000


def detect(env: dict | None = None) -> DistEnv:
    """This process's rank and rendezvous from the launcher's environment variables."""
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        return DistEnv(
            rank=int(env["RANK"]),
            world_size=int(env["WORLD_SIZE"]),
            local_rank=int(env.get("LOCAL_RANK", "0")),
            master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
            master_port=int(env.get("MASTER_PORT", "29500")),
            launcher="torchrun",
        )
    # Only inside an srun step: a batch script also has SLURM_PROCID=0 and the job's SLURM_NTASKS.
    if "SLURM_PROCID" in env and "SLURM_STEP_NUM_TASKS" in env:
        nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or ""
        hosts = expand_hostlist(nodes) if nodes else []
        master = env.get("MASTER_ADDR") or (hosts[0] if hosts else env.get("SLURM_LAUNCH_NODE_IPADDR", "127.0.0.1"))
        return DistEnv(
            rank=int(env["SLURM_PROCID"]),
            world_size=int(env["SLURM_STEP_NUM_TASKS"]),
            local_rank=int(env.get("SLURM_LOCALID", "0")),
            master_addr=master,
            master_port=int(env.get("MASTER_PORT") or _slurm_master_port(env)),
            launcher="slurm",
        )
    return DistEnv()


def init_process_group(dist_env: DistEnv, backend: str) -> None:
    """torch.distributed for DeepSpeed: a TCP rendezvous, or an in-memory store for one rank."""
    import torch.distributed as dist

    if dist.is_initialized():
        return
    # DeepSpeed reads these itself (LOCAL_RANK is required), whichever launcher started us.
    os.environ.update(RANK=str(dist_env.rank), WORLD_SIZE=str(dist_env.world_size),
                      LOCAL_RANK=str(dist_env.local_rank), MASTER_ADDR=dist_env.master_addr,
                      MASTER_PORT=str(dist_env.master_port))
    if dist_env.world_size == 1:
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
        return
    dist.init_process_group(
        backend,
        init_method=f"tcp://{dist_env.master_addr}:{dist_env.master_port}",
        rank=dist_env.rank,
        world_size=dist_env.world_size,
    )


def choose_launcher(ranks: int, env: dict | None = None) -> str:
    """srun inside a SLURM allocation, torchrun for several local ranks, none for one rank."""
    env = os.environ if env is None else env
    if ranks <= 1:
        return "none"
    if env.get("SLURM_JOB_ID") and shutil.which("srun"):
        return "slurm"
    return "torchrun"


def parse_slurm_time(text: str) -> float | None:
    """A time as squeue prints it ('2026-11-23T18:05:12', local time) in epoch seconds; None for
    'N/A', 'NONE', 'Unknown' (no time limit, or not known yet)."""
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        return None


def slurm_job_end_time(env: dict | None = None) -> float | None:
    """When this SLURM job reaches its time limit (epoch seconds), asked of squeue once; None
    outside SLURM, without a limit, or when squeue cannot tell."""
    env = os.environ if env is None else env
    job = env.get("SLURM_JOB_ID")
    if not job or not shutil.which("squeue"):
        return None
    try:
        out = subprocess.run(["squeue", "--noheader", "--jobs", job, "--format", "%e"], env=env,
                             capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_slurm_time(out)


def stop_deadline(margin_s: float, log=print) -> float | None:
    """Inside a SLURM job with a time limit: when to checkpoint and stop, `margin_s` before it.

    Read once by `launch` and handed to every rank, so they all stop at the same step; no signal
    is needed, which matters for one-rank jobs: SLURM's --signal would also hit Snakemake's job step.
    """
    import time

    end = slurm_job_end_time()
    if end is None:
        return None
    deadline = end - margin_s
    stamp = datetime.fromtimestamp(deadline).isoformat(timespec="seconds")
    log(f"[launch] SLURM time limit at {datetime.fromtimestamp(end).isoformat(timespec='seconds')}: "
        f"checkpointing and stopping at {stamp} if not done")
    if deadline < time.time() + 60:
        log(f"[launch] warning: the time limit leaves less than a minute after --stop-before-limit "
            f"{margin_s:g} s; each job will train one step")
    return deadline


# What `launch` starts on every rank; tests swap in a module that injects a step callback.
WORKER = ("-m", "pythia_repro.cli")


def launch_command(
    launcher: str, ranks: int, worker_args: list[str], cpus_per_task: int | None = None
) -> list[str]:
    """The command that starts `ranks` workers running `pythia-repro <worker_args>`."""
    module = [sys.executable, *WORKER, *worker_args]
    if launcher == "slurm":
        # One task per rank; a failed rank takes the step down instead of hanging the others.
        # CPUs per task explicitly: srun does not take them from the allocation (Slurm >= 22.05).
        cpus = [f"--cpus-per-task={cpus_per_task}"] if cpus_per_task else []
        return ["srun", f"--ntasks={ranks}", *cpus, "--kill-on-bad-exit=1", *module]
    if launcher == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}",
                *WORKER, *worker_args]
    raise PythiaReproError(f"unknown launcher {launcher!r}")


def run_launcher(command: list[str], env: dict | None = None) -> int:
    """Run a launcher, passing on SLURM's pre-timeout signals so every rank can checkpoint.

    srun forwards SIGTERM/SIGUSR1 to its tasks. torchrun dies on SIGUSR1 (default action) but
    turns SIGTERM into a SIGTERM to each worker, so SIGUSR1 is sent to it as SIGTERM.
    """
    import signal

    torchrun = "torch.distributed.run" in command
    proc = subprocess.Popen(command, env=env)

    def forward(signum, _frame):
        if torchrun and signum == signal.SIGUSR1:
            signum = signal.SIGTERM
        proc.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)}
    try:
        return proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
