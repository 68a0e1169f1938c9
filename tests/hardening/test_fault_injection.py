"""Fault injection: what "resumable" means, proven on a tiny suite through the whole DAG.

One uninterrupted reference run, then a run whose Snakemake process group is SIGKILLed again
and again: inside tokenize, dedup, the data order, each training segment of both models, export,
upload, evaluate and the analysis jobs, each time followed by the documented recovery (`--unlock`,
then the same command). Between two kills the latest checkpoint of one model is also corrupted
(its optimizer file truncated), as a failing disk would. Every final output (corpus, token
files, index maps, tokenizer, weights, per-step losses, eval metrics, memorization scores, term
counts, arithmetic accuracy) must equal the reference, and every killed training segment must
resume from the last checkpoint that was complete (and intact) when it died: no step before it
is trained twice.

Training kills are exact: a wrapper `pythia-repro` on PATH runs chosen segments through
`pythia_repro.testing.step_signal`, so their rank stops itself (SIGSTOP) right after a given step
and the test kills the whole group while it is frozen. The other kills land wherever the job is
0.3 s after it started.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pythia_repro.config import load_suite
from pythia_repro.train import checkpoint

pytestmark = pytest.mark.slow

# (model, segment end) -> the step after which its rank stops itself; the last is corrupted after the kill.
STOPS = {"pythia-nano:4": 3, "pythia-nano-deduped:8": 6, "pythia-nano:8": 5}
CORRUPT_AFTER = "pythia-nano:8"  # its latest checkpoint (step 4) is truncated: it must resume from step 2
# Verbs killed 0.3 s into a job (any job of the verb; each once).
TIMED = ["tokenize", "dedup-signatures", "order", "export", "upload", "evaluate", "memorization", "term-counts",
         "arithmetic-eval"]

WRAPPER = '''#!{python}
"""pythia-repro, except that a planned training segment stops its rank after a step (the test
takes the segment off the plan once it has stopped there)."""
import json, os, sys
args = sys.argv[1:]
plan = json.load(open(os.environ["FAULT_PLAN"]))
if args and args[0] == "launch":
    key = args[args.index("--model") + 1] + ":" + args[args.index("--until-step") + 1]
    if key in plan:
        os.execv(sys.executable, [sys.executable, "-m", "pythia_repro.testing.step_signal", str(plan[key]), "STOP",
                                  *args])
os.execv(sys.executable, [sys.executable, "-m", "pythia_repro.cli", *args])
'''


def _config(tmp_path: Path, tiny_config_path: Path, results: Path) -> Path:
    cfg = yaml.safe_load(tiny_config_path.read_text())
    cfg["results_dir"] = str(results)
    cfg["analysis"] = {
        "memorization": {"steps": [8], "k": 8, "l": 8},
        "term_frequency": {"steps": [8], "ops": ["plus"], "shots": [0], "x2_per_x1": 1},
    }
    path = tmp_path / f"{results.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _snakemake(workdir: Path, config: Path, path_dirs: list[str], *args: str, env: dict | None = None):
    env = dict(os.environ if env is None else env, TOKENIZERS_PARALLELISM="false")
    env["PATH"] = os.pathsep.join([*path_dirs, env["PATH"]])
    repo = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(repo / "Snakefile"), "--configfile", str(config),
           "--profile", str(repo / "profiles" / "local"), *args]
    return subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _session_processes(sid: int) -> dict[int, tuple[str, list[str]]]:
    """pid -> (state, argv) of every live process in session `sid`."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # exited meanwhile
        fields = stat[stat.rindex(")") + 2:].split()  # state, ppid, pgrp, session, ...
        if int(fields[3]) == sid:
            found[int(entry.name)] = (fields[0], [a.decode() for a in argv if a])
    return found


def _verb(argv: list[str]) -> str | None:
    """The pythia-repro verb a process runs (the CLI, the wrapper or step_signal), if any."""
    for i, arg in enumerate(argv):
        if arg.endswith("pythia-repro") or arg == "pythia_repro.cli":
            return argv[i + 1] if i + 1 < len(argv) else None
        if arg == "pythia_repro.testing.step_signal":
            return argv[i + 3] if i + 3 < len(argv) else None
    return None


def _arg(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def _kill_points(proc, suite, timed: list[str], stops: dict) -> tuple[list[str], dict[str, int]]:
    """Watch one Snakemake run; SIGKILL its group at the first kill point reached. Returns what
    was hit (verbs or 'model:end' segments) and, for every training segment alive at the kill,
    the newest complete checkpoint it left (where its rerun must resume)."""
    first_seen: dict[int, float] = {}
    while proc.poll() is None:
        procs = _session_processes(proc.pid)
        now = time.monotonic()
        hit = []
        for pid, (state, argv) in procs.items():
            verb = _verb(argv)
            first_seen.setdefault(pid, now)
            if verb in ("launch", "train") and state == "T":  # one rank runs inside `launch`
                hit.append(f"{_arg(argv, '--model')}:{_arg(argv, '--until-step')}")
            elif verb in timed and now - first_seen[pid] > 0.3:
                hit.append(verb)
        if hit:
            training = {f"{_arg(a, '--model')}:{_arg(a, '--until-step')}" for _, a in procs.values()
                        if _verb(a) == "launch"}
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            resume_points = {}
            for segment in training:
                model = segment.split(":")[0]
                resume_points[segment] = checkpoint.latest_complete(suite.layout.checkpoints_dir(model))
            return sorted(set(hit)), resume_points
        time.sleep(0.02)
    return [], {}


def _truncate_optimizer_state(suite, model: str) -> int:
    step = checkpoint.latest_complete(suite.layout.checkpoints_dir(model))
    (optim,) = (suite.layout.checkpoints_dir(model) / f"step{step}").glob("*optim_states.pt")
    optim.write_bytes(optim.read_bytes()[: optim.stat().st_size // 2])
    return step


def _outputs(suite) -> dict[str, object]:
    """Every final output, in comparable form (bytes, arrays, tables, metrics)."""
    layout, out = suite.layout, {}
    data = layout.root / "data"
    for path in sorted(data.rglob("*")):
        if path.suffix in (".bin", ".idx", ".npy", ".zst", ".jsonl") or path.name == "tokenizer.json":
            out[str(path.relative_to(layout.root))] = path.read_bytes()
    from safetensors.numpy import load_file

    for model in suite.models:
        losses = [(r["step"], r["loss"]) for r in _read_jsonl(layout.metrics(model.name))]
        assert [s for s, _ in losses] == list(range(1, suite.train_iters + 1)), "each step logged exactly once"
        out[f"losses/{model.name}"] = losses
        for step in suite.export_steps(model.name):
            weights = load_file(layout.export_dir(model.name, step) / "model.safetensors")
            out[f"weights/{model.name}/{step}"] = {k: v.tobytes() for k, v in weights.items()}
        for step in suite.eval_steps(model.name):
            record = json.loads(layout.eval_record(model.name, step).read_text())
            out[f"eval/{model.name}/{step}"] = [run["results"] for run in record["runs"]]
        for step in suite.memorization_steps(model.name):
            out[f"memorization/{model.name}/{step}"] = pd.read_parquet(layout.memorization_scores(model.name, step))
        for step in suite.term_frequency_steps(model.name):
            record = json.loads(layout.arithmetic_record(model.name, step).read_text())
            out[f"arithmetic/{model.name}/{step}"] = [run["results"] for run in record["runs"]]
    for name in suite.term_count_orders:
        out[f"term_counts/{name}"] = pd.read_parquet(layout.term_counts(name))
    return out


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _assert_same(reference: dict, resumed: dict) -> None:
    assert sorted(reference) == sorted(resumed)
    for key, want in reference.items():
        got = resumed[key]
        if isinstance(want, pd.DataFrame):
            pd.testing.assert_frame_equal(got, want, check_exact=True, obj=key)
        elif isinstance(want, np.ndarray):
            np.testing.assert_array_equal(got, want, err_msg=key)
        else:
            assert got == want, f"{key} differs after the interrupted run"


def test_sigkill_anywhere_then_rerun_gives_the_uninterrupted_outputs(tmp_path, tiny_config_path):
    venv_bin = str(Path(sys.executable).parent)
    reference_config = _config(tmp_path, tiny_config_path, tmp_path / "reference")
    run = _snakemake(tmp_path, reference_config, [venv_bin])
    out, _ = run.communicate(timeout=900)
    assert run.returncode == 0, out[-4000:]

    wrapper_dir = tmp_path / "wrapper"
    wrapper_dir.mkdir()
    wrapper = wrapper_dir / "pythia-repro"
    wrapper.write_text(WRAPPER.format(python=sys.executable))
    wrapper.chmod(0o755)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(STOPS))
    env = dict(os.environ, FAULT_PLAN=str(plan))
    config = _config(tmp_path, tiny_config_path, tmp_path / "killed")
    suite = load_suite(config)

    pending_timed, pending_stops = list(TIMED), set(STOPS)
    expected_resume: dict[str, int | None] = {}
    corrupted_step = None
    for attempt in range(len(TIMED) + len(STOPS) + 5):
        if attempt:  # the documented recovery after a SIGKILL: release the lock, same command again
            unlock = _snakemake(tmp_path, config, [str(wrapper_dir), venv_bin], "--unlock", env=env)
            assert unlock.wait(timeout=120) == 0
        run = _snakemake(tmp_path, config, [str(wrapper_dir), venv_bin], env=env)
        hit, resume_points = _kill_points(run, suite, pending_timed, pending_stops)
        if not hit:
            out = run.stdout.read()
            assert run.returncode == 0, out[-4000:]
            break
        expected_resume.update(resume_points)
        for point in hit:
            if point in pending_timed:
                pending_timed.remove(point)
            pending_stops.discard(point)
            plan.write_text(json.dumps({k: v for k, v in STOPS.items() if k in pending_stops}))
            if point == CORRUPT_AFTER:
                corrupted_step = _truncate_optimizer_state(suite, point.split(":")[0])
                # the newest checkpoint that still verifies is where it must resume
                steps = sorted(checkpoint.complete_checkpoints(suite.layout.checkpoints_dir("pythia-nano")))
                expected_resume[point] = max(s for s in steps if s < corrupted_step)
    else:
        pytest.fail("the interrupted run never finished")
    assert not pending_timed and not pending_stops, f"kill points never reached: {pending_timed} {pending_stops}"

    for segment, step in expected_resume.items():
        model, end = segment.split(":")
        log = suite.layout.log("train", f"{model}/end{end}").read_text()
        resumed = [int(s) for s in re.findall(r"resumed at step (\d+)", log)]
        if step is None:  # killed before its first checkpoint: starts afresh
            assert resumed == [], log[-2000:]
        elif step >= int(end):  # killed after its last checkpoint: nothing is retrained
            assert resumed == [] and f"already trained to step {step}" in log, log[-2000:]
        else:
            assert resumed == [step], f"{segment}: expected to resume at step {step}:\n{log[-2000:]}"
    assert corrupted_step == 4
    quarantined = list(suite.layout.checkpoints_dir("pythia-nano").glob("step4.corrupt-*"))
    assert len(quarantined) == 1, "the corrupt checkpoint is moved aside, never deleted"

    _assert_same(_outputs(load_suite(reference_config)), _outputs(suite))
