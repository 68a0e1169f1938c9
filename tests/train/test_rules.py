"""workflow/rules/train.smk: one job per segment, chained; interventions wait for their branch checkpoint."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from pythia_repro.config import load_suite

REPO = Path(__file__).resolve().parents[2]


def _dry_run(tmp_path: Path, config: dict) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--configfile", str(path),
           "--config", f"results_dir={tmp_path / 'results'}", "-n", "--printshellcmds", "--cores", "1"]
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout + run.stderr


def _jobs(out: str, rule: str) -> dict[str, str]:
    """{output: job block} of every job of `rule` in a dry run's listing."""
    blocks = re.split(r"\n(?=\[[^\]]*\]\n(?:local)?rule )", out)
    jobs = {}
    for block in blocks:
        if re.search(rf"^(local)?rule {rule}:", block, re.MULTILINE):
            jobs[re.search(r"output: (\S+)", block).group(1)] = block
    return jobs


def test_pythia_dag_chains_segments_and_branches_interventions(tmp_path: Path) -> None:
    config = yaml.safe_load((REPO / "config" / "pythia.yaml").read_text())
    pile = tmp_path / "pile"
    pile.mkdir()
    config["corpus"]["files"] = [str(pile / Path(f).name) for f in config["corpus"]["files"]]
    for f in [*config["corpus"]["files"], pile / "tok.json"]:
        Path(f).touch()
    config["tokenizer"]["path"] = str(pile / "tok.json")
    config["training"]["ranks"] = 32
    out = _dry_run(tmp_path, config)
    jobs = _jobs(out, "train_segment")
    # 16 models x 29 segments of 5000 steps, + the intervention from step 132000: 137k, 142k, 143k.
    assert len(jobs) == 16 * 29 + 3
    suite = load_suite({**config, "results_dir": str(tmp_path / "results")})
    models = suite.root / "models"

    first = jobs[f"{models}/pythia-410m/segments/end5000.json"]
    assert "segments/end" not in first.split("input:")[1].split("\n")[0]  # a fresh model needs no marker
    assert "pile_text_document_train_0_indexmap_147164160ns_2048sl_1234s_shuffle_idx.npy" in first
    assert "--ranks 32" in first and "--until-step 5000" in first and "launch --config" in first
    assert "tasks=32" in first and "mpi=srun" in first and "gpu=32" in first
    # CPUs per rank come from the resource, not from `threads`, which --cores (here 1) caps.
    assert "cpus_per_task=8" in first and "--threads 8" in first

    second = jobs[f"{models}/pythia-410m/segments/end10000.json"]
    assert f"{models}/pythia-410m/segments/end5000.json" in second

    branch = jobs[f"{models}/pythia-70m-deduped-genderswap/segments/end137000.json"]
    assert f"{models}/pythia-70m-deduped/segments/end135000.json" in branch  # holds checkpoint step132000
    assert "data/deduped/pile_text_document" in branch
    figure = _jobs(out, "loss_figure")[f"{suite.root}/figures/loss.png"]
    assert f"{models}/pythia-12b/segments/end143000.json" in figure
