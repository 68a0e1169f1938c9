"""The model table builds the published Pythia models, initialised as GPT-NeoX did."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from pythia_repro.models.build import build_model, count_parameters, flops_per_token, hf_config, size_info
from pythia_repro.models.sizes import SIZES, Shape, swiglu_width

# Published totals (Pythia README / paper): independent of our formula and code.
PUBLISHED = {
    "14m": 14_067_712,
    "31m": 30_494_720,
    "70m": 70_426_624,
    "160m": 162_322_944,
    "410m": 405_334_016,
    "1b": 1_011_781_632,
    "1.4b": 1_414_647_808,
    "2.8b": 2_775_208_960,
    "6.9b": 6_857_302_016,
    "12b": 11_846_072_320,
}


@pytest.mark.parametrize("size", list(PUBLISHED))
def test_parameter_count_matches_published(size: str) -> None:
    info = size_info(size)
    assert info["num_parameters"] == PUBLISHED[size]
    assert info["hf_config"]["model_type"] == "gpt_neox"


def test_model_info_cli_json() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pythia_repro.cli", "model-info", "--size", "160m", "--json"],
        check=True, capture_output=True, text=True,
    ).stdout
    info = json.loads(out)
    assert info["num_parameters"] == PUBLISHED["160m"]
    cfg = info["hf_config"]
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"]) == (768, 12, 12)
    assert cfg["rope_parameters"]["partial_rotary_factor"] == 0.25 and cfg["use_parallel_residual"] is True
    assert cfg["vocab_size"] == 50304 and cfg["tie_word_embeddings"] is False


def test_unknown_size_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown size '7b'"):
        size_info("7b")


def test_padded_vocab_for_model_parallel_sizes() -> None:
    assert size_info("6.9b")["padded_vocab_size"] == 50432
    assert size_info("12b")["padded_vocab_size"] == 50688


def test_palm_is_multi_query_tied_and_bias_free() -> None:
    model = build_model("palm", SIZES["nano"], vocab_size=512, seq_length=32, seed=0)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert not [n for n, _ in model.named_parameters() if n.endswith("bias")]
    attn = model.model.layers[0].self_attn
    head_dim = 64 // 4
    assert attn.k_proj.weight.shape == (head_dim, 64) and attn.q_proj.weight.shape == (64, 64)


def test_llama_is_untied_rmsnorm_swiglu() -> None:
    model = build_model("llama", SIZES["nano"], vocab_size=512, seq_length=32, seed=0)
    assert model.get_output_embeddings().weight is not model.get_input_embeddings().weight
    assert not [n for n, _ in model.named_parameters() if n.endswith("bias")]
    assert model.model.layers[0].mlp.gate_proj.weight.shape == (swiglu_width(256), 64)
    assert type(model.model.norm).__name__ == "LlamaRMSNorm"


def test_small_init_and_wang_init_stds() -> None:
    # A wide model so the sample std of each matrix is close to its target.
    shape = Shape(layers=2, d_model=256, heads=4, ffn=1024, init="small")
    model = build_model("gpt-neox", shape, vocab_size=1024, seq_length=16, seed=3)
    small, wang = math.sqrt(2 / (5 * 256)), 2 / (2 * math.sqrt(256))
    params = dict(model.named_parameters())
    assert params["gpt_neox.embed_in.weight"].std().item() == pytest.approx(small, rel=0.02)
    assert params["gpt_neox.layers.0.attention.query_key_value.weight"].std().item() == pytest.approx(small, rel=0.02)
    assert params["gpt_neox.layers.1.attention.dense.weight"].std().item() == pytest.approx(wang, rel=0.02)
    assert params["gpt_neox.layers.1.mlp.dense_4h_to_h.weight"].std().item() == pytest.approx(wang, rel=0.02)
    assert params["gpt_neox.layers.0.attention.query_key_value.bias"].abs().max().item() == 0.0
    assert torch.all(params["gpt_neox.final_layer_norm.weight"] == 1.0)


def test_normal_init_for_large_models() -> None:
    shape = Shape(layers=8, d_model=256, heads=4, ffn=1024, init="normal")
    model = build_model("gpt-neox", shape, vocab_size=1024, seq_length=16, seed=3)
    params = dict(model.named_parameters())
    assert model.get_output_embeddings().weight.std().item() == pytest.approx(0.02, rel=0.02)
    assert params["gpt_neox.layers.0.attention.dense.weight"].std().item() == pytest.approx(0.02 / 4, rel=0.02)


def test_init_is_seeded() -> None:
    a = build_model("gpt-neox", SIZES["nano"], vocab_size=512, seq_length=32, seed=1)
    b = build_model("gpt-neox", SIZES["nano"], vocab_size=512, seq_length=32, seed=1)
    c = build_model("gpt-neox", SIZES["nano"], vocab_size=512, seq_length=32, seed=2)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["lm_head.weight"], sc["lm_head.weight"])


@pytest.mark.parametrize("arch", ["gpt-neox", "llama", "palm"])
def test_forward_and_flops(arch: str) -> None:
    model = build_model(arch, SIZES["nano"], vocab_size=512, seq_length=32, seed=0)
    logits = model(torch.randint(0, 512, (2, 32))).logits
    assert logits.shape == (2, 32, 512)
    n = count_parameters(model)
    assert flops_per_token(model, SIZES["nano"], 32) > 6 * (n - 512 * 64)
    assert hf_config(arch, SIZES["nano"], 512, 32).max_position_embeddings == 32
