"""Two real training steps, exported: `pythia-repro train --until-step 2`, then `pythia-repro export`
of steps 1 and 2, loaded with `AutoModelForCausalLM.from_pretrained`, computes the logits of the
weights the trainer saved (read here straight from DeepSpeed's model-states file)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from pythia_repro.config import load_suite
from pythia_repro.layout import CHECKPOINT_MANIFEST, Layout

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

MODEL = "pythia-pico"
IDS = torch.tensor([[2, 9, 40, 7, 0, 77, 3, 15, 101, 64, 8, 1, 30, 55, 12, 90]])


def checkpoint_model(tag_dir) -> torch.nn.Module:
    """The trainer's weights (engine.module's state dict, HF names) in a model built from the manifest."""
    manifest = json.loads((tag_dir / CHECKPOINT_MANIFEST).read_text())
    hf = dict(manifest["hf_config"])
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(hf.pop("model_type"), **hf))
    states = torch.load(tag_dir / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=False)
    model.load_state_dict(states["module"])
    return model.float().eval()


def test_trained_checkpoints_export_with_the_trainers_weights(tmp_path, tiny_suite, run_cli):
    config = tiny_suite(tmp_path / "suite")  # fp32, ZeRO 1, checkpoints at steps 0, 1, 2, 4, 8
    run_cli("train", "--config", str(config), "--model", MODEL, "--until-step", "2", "--no-tensorboard")
    layout = Layout(load_suite(config).root)
    logits = {}
    for step in (1, 2):
        out = layout.export_dir(MODEL, step)
        run_cli("export", "--config", str(config), "--model", MODEL, "--step", str(step), "--output", str(out))
        exported = AutoModelForCausalLM.from_pretrained(out, torch_dtype=torch.float32).eval()
        with torch.no_grad():
            logits[step] = exported(input_ids=IDS).logits
            expected = checkpoint_model(layout.checkpoint(MODEL, step))(input_ids=IDS).logits
        torch.testing.assert_close(logits[step], expected, rtol=1e-5, atol=1e-5)
    # the two exports are two different points of training
    assert not torch.allclose(logits[1], logits[2], atol=1e-3)
