"""What jobs that load a model ask the scheduler for: one GPU, or several for a model too large
for one (its layers split over them)."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import torch
import yaml

from pythia_repro import resources
from pythia_repro.analysis.memorization import load_model
from pythia_repro.config import load_suite

REPO = Path(__file__).resolve().parents[1]


def _palm(**evaluate) -> dict:
    cfg = yaml.safe_load((REPO / "config" / "palm.yaml").read_text())
    cfg["evaluate"].update(evaluate)
    return cfg


def test_model_gpus_from_the_weights_and_the_gpu_memory() -> None:
    suite = load_suite(_palm())
    models = {m.size: m.name for m in suite.models if m.data == "standard"}
    # bfloat16 weights + 25%, over 80 GiB: PaLM's exact parameter counts (tests/models/test_recipes.py)
    for size, params in (("palm-8b", 8_632_012_800), ("palm-62b", 62_495_662_080), ("palm-540b", 540_356_474_880)):
        expected = math.ceil(1.25 * 2 * params / (80 * 2**30))
        assert resources.model_gpus(suite, models[size]) == expected
    assert [resources.model_gpus(suite, models[s]) for s in ("palm-8b", "palm-62b", "palm-540b")] == [1, 2, 16]
    # an H200's 141 GB
    big = load_suite(_palm(gpu_memory_gb=141))
    assert [resources.model_gpus(big, models[s]) for s in ("palm-8b", "palm-62b", "palm-540b")] == [1, 2, 9]
    # the rules' resource: per model, on GPU suites only
    gpu = resources.model_gpus_resource(suite, True)["gpu"]
    assert gpu(SimpleNamespace(model=models["palm-540b"])) == 16 and gpu(SimpleNamespace(model=models["palm-8b"])) == 1
    assert resources.model_gpus_resource(suite, False) == {}
    assert resources.model_parallel(suite, models["palm-62b"], "cuda")
    assert not resources.model_parallel(suite, models["palm-8b"], "cuda")
    assert not resources.model_parallel(suite, models["palm-62b"], "cpu")


def test_default_suite_models_take_one_gpu() -> None:
    suite = load_suite(REPO / "config" / "config.yaml")
    assert {resources.model_gpus(suite, m.name) for m in suite.models} == {1}


def test_a_split_model_scores_as_the_whole_one(tmp_path: Path) -> None:
    """The device_map="auto" load (accelerate) the case studies use for a model too large for one
    GPU gives the same logits as the plain load (here on CPU, where it places every layer on it)."""
    from pythia_repro.models.build import build_model
    from pythia_repro.models.sizes import SIZES

    model = build_model("gpt-neox", SIZES["nano"], vocab_size=256, seq_length=16, seed=0)
    model.save_pretrained(tmp_path)
    plain, split = load_model(tmp_path, "cpu"), load_model(tmp_path, "cpu", parallelize=True)
    x = torch.randint(0, 256, (2, 16))
    with torch.no_grad():
        assert torch.equal(plain(x).logits, split(x).logits)
