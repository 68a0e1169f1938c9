"""workflow/rules/train.smk: one job per segment, chained; interventions wait for their branch checkpoint."""

from __future__ import annotations

import re

import pytest

from pythia_repro.config import load_suite
from pythia_repro.layout import Layout


def _jobs(out: str, rule: str) -> dict[str, str]:
    """{output: job block} of every job of `rule` in a dry run's listing."""
    blocks = re.split(r"\n(?=\[[^\]]*\]\n(?:local)?rule )", out)
    jobs = {}
    for block in blocks:
        if re.search(rf"^(local)?rule {rule}:", block, re.MULTILINE):
            jobs[re.search(r"output: (\S+)", block).group(1)] = block
    return jobs


@pytest.mark.slow  # the paper's DAG: ~20-50 s to build (once per session, shared)
def test_pythia_dag_chains_segments_and_branches_interventions(pythia_dry_run) -> None:
    out = pythia_dry_run["out"]  # config/pythia.yaml with training.ranks 32
    jobs = _jobs(out, "train_segment")
    # 16 models x 29 segments of 5000 steps, + 4 interventions from step 133000 (138k, 143k) and the
    # 1.4b one from step 113000 (118k, 123k, ..., 143k).
    assert len(jobs) == 16 * 29 + 4 * 2 + 6
    suite = load_suite(pythia_dry_run["config"])
    layout = Layout(suite.root)

    first = jobs[str(layout.segment_marker("pythia-410m", 5000))]
    assert "segments/end" not in first.split("input:")[1].split("\n")[0]  # a fresh model needs no marker
    assert "pile_text_document_train_0_indexmap_147164160ns_2048sl_1234s_shuffle_idx.npy" in first
    assert "--ranks 32" in first and "--until-step 5000" in first and "launch --config" in first
    assert "tasks=32" in first and "mpi=srun" in first and "gpu=32" in first
    # CPUs per rank come from the resource, not from `threads`, which --cores (here 1) caps.
    assert "cpus_per_task=8" in first and "--threads 8" in first

    second = jobs[str(layout.segment_marker("pythia-410m", 10000))]
    assert str(layout.segment_marker("pythia-410m", 5000)) in second

    branch = jobs[str(layout.segment_marker("pythia-70m-deduped-genderswap", 138000))]
    assert str(layout.segment_marker("pythia-70m-deduped", 135000)) in branch  # holds checkpoint step133000
    assert str(layout.data_prefix("deduped")) in branch
    figure = _jobs(out, "loss_figure")[str(layout.loss_figure)]
    assert str(layout.segment_marker("pythia-12b", 143000)) in figure
