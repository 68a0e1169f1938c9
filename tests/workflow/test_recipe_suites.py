"""The LLaMA and PaLM recipes as suites: each tiny twin (tests/configs/{llama,palm}-tiny.yaml) run
through the whole DAG (tokenizer, data, two training segments, export, upload, evaluation,
memorization, figures) and checked against the recipe; and the full-size configs' dry runs.

The learning rates and PaLM's batch ramp are checked against values worked out by hand, not
against train/schedule.py or BatchSchedule.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml
from tokenizers import Tokenizer

from pythia_repro.config import load_suite
from pythia_repro.layout import CHECKPOINT_MANIFEST, Layout

# metrics.jsonl's step s is the update that used the schedule at iteration n = s - 1.
LLAMA_LR, LLAMA_MIN_LR = 1e-3, 1e-4  # the llama-tiny row; warmup_steps 2, train_iters 8
PALM_LR = 1e-2 / 8  # the palm-tiny row: PaLM's 1e-2 / sqrt(d_model 64); lr_constant_steps 3
EXPECTED_LR = {
    # Warmup n / 2 of the peak, then the cosine over the 6 steps left, from the peak to min_lr.
    "llama": [0.0, LLAMA_LR / 2, LLAMA_LR]
    + [LLAMA_MIN_LR + (LLAMA_LR - LLAMA_MIN_LR) / 2 * (1 + math.cos(math.pi * k / 6)) for k in range(1, 6)],
    # The peak for n <= 3, then peak x sqrt(3 / n).
    "palm": [PALM_LR] * 4 + [PALM_LR * math.sqrt(3 / n) for n in range(4, 8)],
}
# Spot values by hand: llama n=3: 1e-4 + 4.5e-4 x (1 + cos 30°) = 1e-4 + 4.5e-4 x 1.8660254;
# n=7: 1e-4 + 4.5e-4 x (1 - 0.8660254). palm n=4: 1.25e-3 x sqrt(0.75); n=7: 1.25e-3 x sqrt(3/7).
BY_HAND = {"llama": {4: 9.3971143e-4, 8: 1.6028857e-4}, "palm": {1: 1.25e-3, 5: 1.0825318e-3, 8: 8.1831708e-4}}
# Sequences per update (metrics.jsonl step s trains on batch s - 1) and training samples consumed
# after it. PaLM's ramp in palm-tiny.yaml: 2 for steps 0-1, 4 for steps 2-5, then 8; llama: 4.
BATCH_SIZES = {"llama": [4] * 8, "palm": [2, 2, 4, 4, 4, 4, 8, 8]}
SAMPLES = {"llama": [4, 8, 12, 16, 20, 24, 28, 32], "palm": [2, 4, 8, 12, 16, 20, 28, 36]}
# The `transformers` class each arch exports to, with its head_dim and key/value heads (PaLM:
# multi-query attention, one key/value head, head_dim 32 set in its row, wider than 64 / 4).
EXPORTED = {"llama": ("LlamaForCausalLM", 16, 4, False), "palm": ("CohereForCausalLM", 32, 1, True)}


@pytest.fixture(scope="module", params=["llama", "palm"])
def recipe_run(request, tmp_path_factory, repo_root, snakemake):
    """The tiny twin's whole DAG, run once per recipe (~1-1.5 min on 2 cores)."""
    recipe = request.param
    config = repo_root / "tests" / "configs" / f"{recipe}-tiny.yaml"
    workdir = tmp_path_factory.mktemp(f"{recipe}-tiny")
    results = workdir / "results"
    run = snakemake(workdir, config, "--cores", "2", results_dir=results)
    suite = load_suite(dict(yaml.safe_load(config.read_text()), results_dir=str(results)))
    (spec,) = suite.models
    layout = Layout(suite.root)
    if run.returncode:
        logs = sorted((suite.root / "logs").rglob("*.log"))
        tails = "\n".join(f"--- {p}\n{p.read_text()[-1500:]}" for p in logs if p.stat().st_size)
        pytest.fail(f"{config.name}: the DAG failed\n{run.stderr[-4000:]}\n{tails}")
    return {"recipe": recipe, "suite": suite, "model": spec.name, "layout": layout}


@pytest.mark.slow
def test_tokenizer_splits_digits(recipe_run):
    tokenizer = Tokenizer.from_file(str(recipe_run["layout"].tokenizer))
    tokens = tokenizer.encode("in 2023, 415 people").tokens
    digits = [t for t in tokens if any(c.isdigit() for c in t)]
    assert digits == list("2023415"), tokens


@pytest.mark.slow
def test_learning_rate_follows_the_recipe_across_the_resume(recipe_run):
    layout, model, recipe = recipe_run["layout"], recipe_run["model"], recipe_run["recipe"]
    rows = [json.loads(line) for line in layout.metrics(model).read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 9))
    assert [r["lr"] for r in rows] == pytest.approx(EXPECTED_LR[recipe], rel=1e-9, abs=1e-15)
    shape = recipe_run["suite"].model(model).shape  # the size row the hand values assume
    assert (shape.lr, shape.min_lr) == pytest.approx((LLAMA_LR, LLAMA_MIN_LR) if recipe == "llama" else (PALM_LR, 0.0))
    lr = {r["step"]: r["lr"] for r in rows}
    for step, value in BY_HAND[recipe].items():
        assert lr[step] == pytest.approx(value, rel=1e-6)
    # The second segment is its own job, which resumed from the first one's last checkpoint.
    assert "resumed at step 4" in layout.log("train", f"{model}/end8").read_text()
    assert layout.loss_figure.is_file()


@pytest.mark.slow
def test_batch_sizes_follow_the_recipe_across_the_resume(recipe_run):
    """PaLM's ramp: the first segment crosses it at step 2, the second resumes at step 4 inside the
    4-sequence phase and crosses at step 6; every update and checkpoint counts its samples."""
    layout, model, recipe = recipe_run["layout"], recipe_run["model"], recipe_run["recipe"]
    rows = [json.loads(line) for line in layout.metrics(model).read_text().splitlines()]
    assert [r["batch_size"] for r in rows] == BATCH_SIZES[recipe]
    assert [r["samples"] for r in rows] == SAMPLES[recipe]
    consumed = {step: json.loads((layout.checkpoint(model, step) / CHECKPOINT_MANIFEST).read_text())["samples_consumed"]
                for step in (0, 1, 2, 4, 8)}
    assert consumed == {0: 0, **{step: SAMPLES[recipe][step - 1] for step in (1, 2, 4, 8)}}
    assert recipe_run["suite"].tokens_seen(8) == SAMPLES[recipe][-1] * 32  # what evaluation records


@pytest.mark.slow
def test_export_loads_as_the_recipes_transformers_class(recipe_run):
    import torch
    from transformers import AutoModelForCausalLM

    layout, model = recipe_run["layout"], recipe_run["model"]
    class_name, head_dim, kv_heads, tied = EXPORTED[recipe_run["recipe"]]
    loaded = AutoModelForCausalLM.from_pretrained(layout.export_dir(model, 8))
    assert type(loaded).__name__ == class_name
    assert (loaded.config.head_dim, loaded.config.num_key_value_heads) == (head_dim, kv_heads)
    assert loaded.config.tie_word_embeddings is tied
    with torch.no_grad():
        logits = loaded(torch.tensor([[0, 5, 7]])).logits
    assert logits.shape == (1, 3, 512)  # tokenizer.vocab_size, a multiple of 128: no padding


@pytest.mark.slow
def test_evaluation_and_memorization_outputs(recipe_run):
    layout, model = recipe_run["layout"], recipe_run["model"]
    for step in (0, 8):
        (run,) = json.loads(layout.eval_record(model, step).read_text())["runs"]
        assert {"acc,none", "perplexity,none"} <= set(run["results"]["lambada_heldout"])
    scores = pd.read_parquet(layout.memorization_scores(model, 8))
    assert {"index", "score", "memorized"} <= set(scores.columns)
    assert len(scores) == SAMPLES[recipe_run["recipe"]][-1]  # every sequence seen by step 8


@pytest.mark.slow
@pytest.mark.parametrize("recipe, models, segments", [("llama", 4, 240), ("palm", 3, 255)])
def test_full_size_config_dry_run(recipe, models, segments, tmp_path, repo_root, snakemake, job_counts):
    """config/{llama,palm}.yaml plan on placeholder Pile shards (a dry run needs them to exist)."""
    config = yaml.safe_load((repo_root / "config" / f"{recipe}.yaml").read_text())
    config["corpus"]["files"] = [str(tmp_path / Path(f).name) for f in config["corpus"]["files"]]
    for f in config["corpus"]["files"]:
        Path(f).touch()
    path = tmp_path / f"{recipe}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    run = snakemake(tmp_path, path, "-n", "--quiet", "rules", "--cores", "1", results_dir=tmp_path / "results")
    assert run.returncode == 0, run.stderr[-3000:]
    counts = job_counts(run.stdout + run.stderr)
    assert counts["train_segment"] == models * segments
    assert counts["tokenizer"] == 1 and counts["tokenize_shard"] == 30
