"""Memorization through the DAG on a really trained tiny suite: the scores of the exported
checkpoint equal Hugging Face `generate`, the output contract holds, two slices merge into the
unsliced result, and after a slice job is killed the rerun redoes that slice only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from pythia_repro.config import load_suite

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
MODEL = "pythia-pico"
STEP = 8
ANALYSIS = {"memorization": {"steps": [STEP], "k": 8, "l": 8, "slices": 2, "batch_size": 16, "bin_size": 4}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_suite, run_cli):
    """A tiny suite trained to step 8 and exported, with memorization in 2 slices configured."""
    root = tmp_path_factory.mktemp("memorization")
    config = tiny_suite(root)
    cfg = yaml.safe_load(config.read_text())
    cfg["interventions"] = []
    cfg["analysis"] = ANALYSIS
    config.write_text(yaml.safe_dump(cfg))
    suite = load_suite(config)
    run_cli("train", "--config", str(config), "--model", MODEL, "--until-step", str(STEP))
    run_cli("export", "--config", str(config), "--model", MODEL, "--step", str(STEP),
            "--output", str(suite.layout.export_dir(MODEL, STEP)))
    return config, suite


def _snakemake(config: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--configfile", str(config),
           "--allowed-rules", "memorization", "memorization_merge", "--cores", "1", *args]
    return subprocess.Popen(cmd, cwd=config.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def test_scores_equal_generate_and_slices_merge(trained, run_cli, tmp_path):
    from pythia_repro.analysis.memorization import generate_scores, load_model
    from pythia_repro.analysis.stage import training_order

    config, suite = trained
    whole = tmp_path / "whole.parquet"
    run_cli("memorization", "--config", str(config), "--model", MODEL, "--step", str(STEP), "--output", str(whole))
    table = pq.read_table(whole)
    assert [f.name for f in table.schema] == ["index", "score", "memorized"]
    assert str(table.schema.field("index").type) == "int64" and str(table.schema.field("memorized").type) == "bool"
    index = table.column("index").to_numpy()
    # Every training sequence seen before the checkpoint, in training order.
    assert index.tolist() == list(range(STEP * suite.global_batch_size))

    # Pythia's definition: generate greedily from the exported checkpoint, compare tokens.
    spec = suite.model(MODEL)
    rows = training_order(suite, spec.data, spec.seed).samples(0, len(index))
    model = load_model(suite.layout.export_dir(MODEL, STEP))
    expected, flags = generate_scores(model, rows, k=8, l=8)
    np.testing.assert_array_equal(table.column("score").to_numpy(), expected)
    np.testing.assert_array_equal(table.column("memorized").to_numpy(), flags)
    assert 0 < expected.mean() < 1, "the checkpoint scores neither nothing nor everything"

    parts = []
    for i in range(2):
        part = tmp_path / f"slice{i}.parquet"
        run_cli("memorization", "--config", str(config), "--model", MODEL, "--step", str(STEP), "--slice", f"{i}/2",
                "--output", str(part))
        parts.append(str(part))
    merged = tmp_path / "merged.parquet"
    run_cli("memorization-merge", "--config", str(config), "--model", MODEL, "--step", str(STEP),
            "--inputs", *parts, "--output", str(merged))
    assert pq.read_table(merged).equals(table)


def test_rerun_after_a_killed_slice_redoes_only_that_slice(trained):
    config, suite = trained
    layout = suite.layout
    target = str(layout.memorization_scores(MODEL, STEP))
    slices = [layout.memorization_slice(MODEL, STEP, i, 2) for i in range(2)]
    proc = _snakemake(config, target)
    seen = []
    for line in proc.stdout:  # one slice job finished (and Snakemake recorded it): kill the other mid-job
        seen.append(line)
        if "Finished jobid" in line and "memorization)" in line:
            break
    else:
        pytest.fail("snakemake ended before a slice finished:\n" + "".join(seen[-50:]))
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = [s for s in slices if s.exists()]
    assert len(done) == 1 and not Path(target).exists()

    dry = _snakemake(config, "-n", "--rerun-incomplete", target)
    out, _ = dry.communicate(timeout=120)
    assert dry.returncode == 0, out[-3000:]
    planned = {line.split(":", 1)[1].strip() for line in out.splitlines() if line.strip().startswith("output:")}
    assert str(done[0]) not in planned and any(str(s) in planned for s in slices if s not in done), out[-3000:]

    # A SIGKILL leaves Snakemake's lock behind: releasing it is the one step the user adds.
    unlock = _snakemake(config, "--unlock", target)
    assert unlock.wait(timeout=120) == 0
    run = _snakemake(config, "--rerun-incomplete", target)
    out, _ = run.communicate(timeout=300)
    assert run.returncode == 0, out[-3000:]
    assert Path(target).is_file() and all(s.exists() for s in slices)
    assert len(pq.read_table(target)) == STEP * suite.global_batch_size
