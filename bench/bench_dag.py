"""How long Snakemake takes to build the full Pythia DAG, and how much memory it needs.

    python bench/bench_dag.py [--config config/pythia.yaml] [--repeat 3] [--out bench/results/dag.md]

Runs `snakemake -n --configfile CONFIG` (the dry run a user starts first) on a copy of the config
whose corpus shards and tokenizer point at empty placeholder files in a temporary directory
(the real ones live on the user's cluster; a dry run only needs them to exist), with
results_dir in that directory too. Reports wall time and peak RSS of the snakemake process
(getrusage of the child) for the default printing dry run and for `--quiet`, and the job counts
per rule. The requirement: under 30 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def placeholder_config(config: Path, tmp: Path) -> Path:
    cfg = yaml.safe_load(config.read_text())
    inputs = tmp / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    if cfg["corpus"]["source"] == "files":
        files = []
        for original in cfg["corpus"]["files"]:
            path = inputs / Path(original).name
            path.touch()
            files.append(str(path))
        cfg["corpus"]["files"] = files
        if cfg["corpus"].get("heldout_files"):
            held = []
            for original in cfg["corpus"]["heldout_files"]:
                path = inputs / ("heldout_" + Path(original).name)
                path.touch()
                held.append(str(path))
            cfg["corpus"]["heldout_files"] = held
    if cfg["tokenizer"]["source"] == "file":
        path = inputs / "tokenizer.json"
        path.touch()
        cfg["tokenizer"]["path"] = str(path)
    for variant, order in (cfg.get("data", {}).get("orders") or {}).items():
        # Published suites: the pre-shuffled (or GPT-NeoX) token files the models saw.
        prefix = inputs / f"{variant}_order"
        for suffix in (".bin", ".idx"):
            Path(f"{prefix}{suffix}").touch()
        order[next(iter(order))] = str(prefix)
    for section in ("gender_bias",):
        bias = cfg.get("analysis", {}).get(section, {})
        if bias.get("winobias_dir"):
            bias["winobias_dir"] = str(inputs / "winobias")
        if bias.get("crows_pairs_file"):
            bias["crows_pairs_file"] = str(inputs / "crows_pairs_anonymized.csv")
    cfg["results_dir"] = str(tmp / "results")
    out = tmp / config.name
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


def run_child(cmd: list[str], cwd: Path, env: dict) -> tuple[float, float, float, str, int]:
    """(wall s, CPU s, peak RSS MiB, output, exit code) of one child process, measured by a fresh
    python wrapper so getrusage(RUSAGE_CHILDREN) sees only this child. CPU time (user + sys) is
    what the DAG build costs; wall time also counts waiting for a core on a busy machine."""
    wrapper = (
        "import resource, subprocess, sys, time, json\n"
        "t = time.perf_counter()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "wall = time.perf_counter() - t\n"
        "ru = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "stats = {'wall': wall, 'cpu': ru.ru_utime + ru.ru_stime, 'rss': ru.ru_maxrss / 1024, 'rc': p.returncode}\n"
        "sys.stdout.write(json.dumps(stats) + '\\n' + p.stdout + p.stderr)\n"
    )
    p = subprocess.run([sys.executable, "-c", wrapper, *cmd], cwd=cwd, env=env, capture_output=True, text=True)
    head, _, rest = p.stdout.partition("\n")
    stats = json.loads(head)
    return stats["wall"], stats["cpu"], stats["rss"], rest, stats["rc"]


def job_counts(output: str) -> dict[str, int]:
    if "Job stats:" not in output:
        return {}
    table = output.split("Job stats:", 1)[1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "config" / "pythia.yaml"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "dag.md"))
    args = ap.parse_args()

    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    snakemake = [sys.executable, "-m", "snakemake"]
    rows, counts = [], {}
    with tempfile.TemporaryDirectory(prefix="bench-dag-") as tmp:
        tmp = Path(tmp)
        config = placeholder_config(Path(args.config), tmp)
        base = [*snakemake, "-n", "--snakefile", str(REPO / "Snakefile"), "--configfile", str(config), "--cores", "1"]
        for label, extra in (("snakemake -n", []), ("snakemake -n --quiet", ["--quiet"])):
            for i in range(args.repeat):
                load = os.getloadavg()[0]
                wall, cpu, rss, out, rc = run_child(base + extra, tmp, env)
                if rc != 0:
                    sys.stderr.write(out[-5000:])
                    raise SystemExit(f"dry run failed ({label}, exit {rc})")
                if not counts:
                    counts = job_counts(out)
                rows.append((label, i + 1, wall, cpu, rss, load))
                print(f"{label:24s} run {i + 1}: {wall:6.2f} s wall, {cpu:6.2f} s CPU, peak RSS {rss:7.1f} MiB"
                      f" (load average before: {load:.1f})", flush=True)
    if not counts:  # --quiet prints no table; the first (printing) run had it
        raise SystemExit("no job stats in the dry-run output")

    config_path = Path(args.config).resolve()
    shown_config = config_path.relative_to(REPO) if config_path.is_relative_to(REPO) else config_path
    lines = [
        "# DAG build: dry run of the full Pythia config",
        "",
        f"`python bench/bench_dag.py --config {shown_config}`"
        f" on {platform.node() or 'this machine'} ({os.cpu_count()} cores, Python {platform.python_version()}),"
        f" {time.strftime('%Y-%m-%d')}.",
        "",
        "The corpus shards and tokenizer of the config point at empty placeholder files (a dry run needs",
        "them to exist, not to hold data); results_dir is a fresh temporary directory, so every job is",
        "planned. Wall time, CPU time (user + sys) and peak RSS of the `snakemake` process; Snakemake",
        "builds the DAG on one core, so on an idle machine wall time is about the CPU time. The load",
        "average before each run shows how busy the machine was (other work inflates wall time only).",
        "",
        "| command | run | wall (s) | CPU (s) | peak RSS (MiB) | load avg before |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [f"| `{label}` | {i} | {wall:.2f} | {cpu:.2f} | {rss:.0f} | {load:.1f} |"
              for label, i, wall, cpu, rss, load in rows]
    best = {label: min(w for lab, _, w, *_ in rows if lab == label) for label, *_ in rows}
    best_cpu = {label: min(c for lab, _, _, c, *_ in rows if lab == label) for label, *_ in rows}
    lines += ["", "Jobs planned:", "", "| rule | jobs |", "| --- | ---: |"]
    lines += [f"| {rule} | {n} |" for rule, n in counts.items()]
    lines += [
        "",
        f"Requirement: under 30 s. Best wall: {', '.join(f'{k}: {v:.1f} s' for k, v in best.items())}; "
        f"best CPU: {', '.join(f'{k}: {v:.1f} s' for k, v in best_cpu.items())}.",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0 if max(best_cpu.values()) < 30 else 1


if __name__ == "__main__":
    sys.exit(main())
