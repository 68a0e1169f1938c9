"""A real single-node SLURM cluster on this machine, for tests and manual use.

Starts munged, slurmctld and slurmd (Debian's slurm-wlm, see tests/slurm/install_slurm.sh) with a
generated configuration; every key, socket, state, spool and log file lives under one directory,
so nothing in /etc is touched and a system SLURM, if any, is left alone (own ports, own munge socket).
Clients find the cluster through ``SLURM_CONF`` (``SlurmCluster.env()``).

No accounting database: finished jobs stay visible to ``squeue --states=all`` and ``scontrol show job``
for ``MinJobAge`` (a day), which is what the Snakemake SLURM executor's ``--slurm-status-command squeue``
relies on.

Command line (manual use)::

    python tests/slurm/harness.py start [--dir DIR]   # prints `export SLURM_CONF=...`
    python tests/slurm/harness.py status [--dir DIR]
    python tests/slurm/harness.py stop  [--dir DIR]

Tests use the session fixture ``slurm_cluster`` (tests/conftest.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BINARIES = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "sinfo", "scontrol")
CLIENTS = (
    "sbatch",
    "srun",
    "salloc",
    "squeue",
    "sinfo",
    "scontrol",
    "scancel",
    "sacct",
    "sacctmgr",
    "sshare",
    "sstat",
    "sattach",
)
INSTALL_HINT = ("run `bash tests/slurm/install_slurm.sh` (installs Debian's slurm-wlm and munge; needs root;"
                " `make test` runs it itself as root)")
DEFAULT_DIR = Path(tempfile.gettempdir()) / "pythia-repro-slurm"
PARTITION = "debug"
NODE_CPUS = 2  # two ranks of a CPU (gloo) training job fit one node


class SlurmUnavailable(RuntimeError):
    """The SLURM or munge binaries are not installed."""


class SlurmStartError(RuntimeError):
    """The daemons were started but the cluster did not come up; the message carries their logs."""


def missing_binaries() -> list[str]:
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin" + os.pathsep + "/sbin"
    return [b for b in BINARIES if shutil.which(b, path=path) is None]


def _which(name: str) -> str:
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin" + os.pathsep + "/sbin"
    found = shutil.which(name, path=path)
    if found is None:
        raise SlurmUnavailable(f"`{name}` not found; {INSTALL_HINT}")
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _real_memory_mb() -> int:
    """Memory the node advertises: half of this machine's RAM, at least 1 GB."""
    try:
        total_kb = int(
            next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal:")).split()[1]
        )
    except (OSError, StopIteration, ValueError):
        total_kb = 4 * 1024 * 1024
    return max(1024, total_kb // 1024 // 2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as gone
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


@dataclass
class SlurmCluster:
    """One single-node cluster rooted at ``root``."""

    root: Path
    hostname: str = field(default_factory=lambda: socket.gethostname().split(".")[0])
    cpus: int = NODE_CPUS
    partition: str = PARTITION

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()

    # --- layout -------------------------------------------------------------------------------
    @property
    def conf(self) -> Path:
        return self.root / "etc" / "slurm.conf"

    @property
    def munge_socket(self) -> Path:
        return self.root / "munge-socket" / "munge.socket"

    @property
    def bin_dir(self) -> Path:
        """Wrappers of the SLURM client commands that default SLURM_CONF to this cluster."""
        return self.root / "bin"

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    @property
    def state_file(self) -> Path:
        return self.root / "harness.json"

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for SLURM clients (sbatch, squeue, snakemake's executor): points at this cluster."""
        env = dict(os.environ if base is None else base)
        env["SLURM_CONF"] = str(self.conf)
        path = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != str(self.bin_dir)]
        if "/usr/sbin" not in path:
            path.append("/usr/sbin")
        env["PATH"] = os.pathsep.join([str(self.bin_dir), *path])
        # a test run from inside a SLURM job must not leak that job's settings into ours
        for key in [k for k in env if k.startswith(("SLURM_", "SBATCH_", "SALLOC_", "SRUN_"))]:
            if key != "SLURM_CONF":
                del env[key]
        return env

    def run(self, *args: str, check: bool = True, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
        """Run a SLURM client command against this cluster; returns the completed process (text)."""
        proc = subprocess.run(
            list(args), env=self.env(kw.pop("env", None)), capture_output=True, text=True, timeout=timeout, **kw
        )
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, args, proc.stdout, proc.stderr)
        return proc

    # --- configuration ------------------------------------------------------------------------
    def write_config(self) -> None:
        for sub in ("etc", "munge", "munge-socket", "log", "state", "spool", "run", "bin"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "munge", 0o700)
        os.chmod(self.root / "munge-socket", 0o755)
        self._write_client_wrappers()
        key = self.root / "munge" / "munge.key"
        if not key.exists():
            subprocess.run(
                [_which("mungekey"), "--create", "--keyfile", str(key)], check=True, capture_output=True, text=True
            )
        os.chmod(key, 0o600)
        user = _user_name()
        ctld_port, slurmd_port = _free_port(), _free_port()
        r = self.root
        conf = f"""\
# Generated by tests/slurm/harness.py: a single-node test cluster, everything under {r}
ClusterName=pythiarepro
SlurmctldHost={self.hostname}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/run/slurmctld.pid
SlurmdPidFile={r}/run/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# A container: no cgroups, no systemd; track job processes through /proc.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
LaunchParameters=use_interactive_step
SlurmdParameters=config_overrides
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# Finished jobs stay in slurmctld (squeue --states=all, scontrol show job) for a day: no slurmdbd here.
MinJobAge=86400
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
Waittime=0
NodeName={self.hostname} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={_real_memory_mb()} State=UNKNOWN
PartitionName={self.partition} Nodes={self.hostname} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
"""
        self.conf.write_text(conf)

    def _write_client_wrappers(self) -> None:
        # snakemake-executor-plugin-slurm-jobstep strips every SLURM_* variable except the job's identity
        # before its nested `srun` (so SLURM_CONF too): on a real cluster the clients read
        # /etc/slurm/slurm.conf. Our config lives elsewhere, so `env()` puts these wrappers first on PATH
        # (PATH survives `sbatch --export=ALL` and the jobstep) and they supply SLURM_CONF when it is unset.
        for name in CLIENTS:
            real = shutil.which(
                name, path=os.pathsep.join(["/usr/local/bin", "/usr/bin", "/bin", os.environ.get("PATH", "")])
            )
            if real is None or Path(real).parent == self.bin_dir:
                continue
            wrapper = self.bin_dir / name
            wrapper.write_text(f'#!/bin/sh\nexport SLURM_CONF="${{SLURM_CONF:-{self.conf}}}"\nexec {real} "$@"\n')
            wrapper.chmod(0o755)

    # --- lifecycle ----------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str]) -> int:
        out = open(self.log_dir / f"{name}.stdout", "ab")
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env(),
            start_new_session=True,
            cwd=self.root,
        )
        out.close()
        self._pids[name] = proc.pid
        self.state_file.write_text(json.dumps({"pids": self._pids, "conf": str(self.conf)}))
        return proc.pid

    def start(self, timeout: float = 90) -> SlurmCluster:
        """Write the configuration, start munged, slurmctld and slurmd, wait until the node is idle."""
        missing = missing_binaries()
        if missing:
            raise SlurmUnavailable(f"SLURM/munge binaries missing: {', '.join(missing)}; {INSTALL_HINT}")
        if self.state_file.exists():
            self.stop()
        self._pids: dict[str, int] = {}
        self.write_config()
        m = self.root / "munge"
        self._spawn(
            "munged",
            [
                _which("munged"),
                "--foreground",
                "--force",
                f"--socket={self.munge_socket}",
                f"--key-file={m / 'munge.key'}",
                f"--pid-file={m / 'munged.pid'}",
                f"--log-file={self.log_dir / 'munged.log'}",
                f"--seed-file={m / 'munged.seed'}",
            ],
        )
        self._wait(lambda: self.munge_socket.exists(), 20, "munged did not create its socket")
        # -c: start from a clean state (a previous run's jobs are not ours); -i: ignore stale state
        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-c", "-i", "-f", str(self.conf)])
        self._wait(
            lambda: (
                self.run("scontrol", "ping", check=False, timeout=10).returncode == 0
                and "UP" in self.run("scontrol", "ping", check=False, timeout=10).stdout
            ),
            30,
            "slurmctld did not answer `scontrol ping`",
        )
        self._spawn("slurmd", [_which("slurmd"), "-D", "-f", str(self.conf), "-N", self.hostname])
        self._wait(self._node_idle, timeout, f"node {self.hostname} did not become idle in sinfo")
        return self

    def _node_idle(self) -> bool:
        proc = self.run("sinfo", "--noheader", "--Node", "--format=%N %t", check=False, timeout=10)
        if proc.returncode != 0:
            return False
        states = dict(line.split() for line in proc.stdout.splitlines() if len(line.split()) == 2)
        return states.get(self.hostname, "").rstrip("*~#!%$@^-") == "idle"

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if ready():
                    return
            except (subprocess.SubprocessError, OSError):
                pass
            dead = [n for n, pid in self._pids.items() if not _alive(pid)]
            if dead:
                break
            time.sleep(0.5)
        dead = [n for n, pid in self._pids.items() if not _alive(pid)]
        detail = f" (exited: {', '.join(dead)})" if dead else ""
        msg = f"SLURM test cluster failed to start: {what}{detail}.\n\n{self.logs()}"
        self.stop()
        raise SlurmStartError(msg)

    def logs(self, tail: int = 60) -> str:
        """The last lines of every daemon log and the configuration, for error messages."""
        parts = []
        for path in sorted(self.log_dir.glob("*")) if self.log_dir.exists() else []:
            lines = path.read_text(errors="replace").splitlines()[-tail:]
            parts.append(f"==> {path} <==\n" + "\n".join(lines))
        if self.conf.exists():
            parts.append(f"==> {self.conf} <==\n{self.conf.read_text()}")
        return "\n\n".join(parts) or f"(no logs under {self.log_dir})"

    def stop(self) -> None:
        """Stop the daemons (slurmd, slurmctld, munged) started for this root; idempotent."""
        pids: dict[str, int] = dict(getattr(self, "_pids", {}) or {})
        if self.state_file.exists():
            try:
                pids.update(json.loads(self.state_file.read_text()).get("pids", {}))
            except (OSError, ValueError):
                pass
        for name in ("slurmd", "slurmctld", "munged"):
            pid = pids.get(name)
            if pid and _alive(pid) and _is_ours(pid, name):
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
                deadline = time.monotonic() + 15
                while _alive(pid) and time.monotonic() < deadline:
                    _reap(pid)
                    time.sleep(0.2)
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)
                _reap(pid)
        self._pids = {}
        self.state_file.unlink(missing_ok=True)

    def is_up(self) -> bool:
        return self.conf.exists() and self._node_idle_or_busy()

    def _node_idle_or_busy(self) -> bool:
        proc = self.run("sinfo", "--noheader", "--Node", "--format=%t", check=False, timeout=10)
        return proc.returncode == 0 and proc.stdout.strip() != ""

    # --- helpers for tests --------------------------------------------------------------------
    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still knows (pending, running and finished), parsed from `scontrol show job`."""
        proc = self.run("scontrol", "show", "job", "--oneliner", check=False)
        if proc.returncode != 0 or "No jobs in the system" in proc.stdout:
            return []
        jobs = []
        for line in proc.stdout.splitlines():
            if not line.strip():
                continue
            record: dict[str, str] = {}
            for token in line.split():
                if "=" in token:
                    k, v = token.split("=", 1)
                    record[k] = v
            jobs.append(record)
        return jobs

    def snakemake_jobs(self, workdir: Path) -> dict[str, list[dict[str, str]]]:
        """Jobs submitted by snakemake-executor-plugin-slurm from ``workdir``, by rule name.

        The plugin submits each job with ``--comment rule_<rule>[_wildcards_<...>]`` and ``-D <workdir>``;
        slurmctld keeps both in its job record.
        """
        by_rule: dict[str, list[dict[str, str]]] = {}
        for rec in self.jobs():
            m = re.match(r"rule_([A-Za-z0-9_]+?)(?:_wildcards_.*)?$", rec.get("Comment", ""))
            if m and Path(rec.get("WorkDir", "")).resolve() == Path(workdir).resolve():
                by_rule.setdefault(m.group(1), []).append(rec)
        return by_rule

    def wait_job(self, job_id: str | int, timeout: float = 120) -> dict[str, str]:
        """Wait until a job leaves PENDING/RUNNING/COMPLETING; returns its `scontrol show job` record."""
        deadline = time.monotonic() + timeout
        while True:
            rec = next((j for j in self.jobs() if j.get("JobId") == str(job_id)), None)
            if rec and rec.get("JobState") not in ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING"):
                return rec
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"SLURM job {job_id} still {rec and rec.get('JobState')} after {timeout}s\n\n{self.logs(30)}"
                )
            time.sleep(0.5)


def session_cluster(tmp_path_factory):
    """Body of the pytest session fixture `slurm_cluster` (a generator: ``yield from`` it).

    Missing binaries or a cluster that does not come up fail the requesting test with the install hint
    or the daemon logs; nothing is skipped silently.
    """
    import pytest

    missing = missing_binaries()
    if missing:
        pytest.fail(f"SLURM/munge binaries missing ({', '.join(missing)}): {INSTALL_HINT}", pytrace=False)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except SlurmStartError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


def _user_name() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def _is_ours(pid: int, name: str) -> bool:
    """Guard against a recycled pid: only signal a process that is the daemon we started."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return False
    return Path(cmdline).name.startswith(name)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=["start", "stop", "status"])
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"cluster root (default {DEFAULT_DIR})")
    args = ap.parse_args(argv)
    cluster = SlurmCluster(args.dir)
    try:
        if args.action == "start":
            cluster.start()
            print(f"SLURM test cluster up (node {cluster.hostname}, partition {cluster.partition}).")
            print(f"export SLURM_CONF={cluster.conf}")
        elif args.action == "stop":
            cluster.stop()
            print("SLURM test cluster stopped.")
        else:
            up = cluster.is_up()
            print(cluster.run("sinfo", check=False).stdout if up else "not running")
            return 0 if up else 1
    except (SlurmUnavailable, SlurmStartError) as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
