"""LLaMA's and PaLM's size tables: the papers' parameter counts, SwiGLU widths, head dims and init."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from pythia_repro.errors import PythiaReproError
from pythia_repro.models.build import build_model, hf_config, size_info
from pythia_repro.models.sizes import LLAMA_VOCAB, PALM_VOCAB, SIZES, Shape, swiglu_width

# LLaMA: (layers, d, heads, SwiGLU width from LLaMA's code with multiple_of=256, paper's count in
# B, how the paper got there from ours: "round" or "truncate" to its decimals).
LLAMA = {
    "llama-7b": (32, 4096, 32, 11008, "6.7", "round"),
    "llama-13b": (40, 5120, 40, 13824, "13.0", "round"),
    "llama-33b": (60, 6656, 52, 17920, "32.5", "round"),
    "llama-65b": (80, 8192, 64, 22016, "65.2", "truncate"),  # 65.29B
}
# PaLM: (layers, d, heads, Table 1's count in B, how); head dim 256, SwiGLU 4d, one key/value head.
PALM = {
    "palm-8b": (32, 4096, 16, "8.63", "round"),
    "palm-62b": (64, 8192, 32, "62.50", "round"),  # 62.496B
    "palm-540b": (118, 18432, 48, "540.35", "truncate"),  # 540.356B
}


def printed(count: int, published: str, how: str) -> str:
    """`count` in billions as the paper printed `published`: rounded or truncated to its decimals."""
    decimals = len(published.split(".")[1])
    billions = count / 1e9
    if how == "truncate":
        billions = math.floor(billions * 10**decimals) / 10**decimals
    return f"{billions:.{decimals}f}"


@pytest.mark.parametrize("size", list(LLAMA))
def test_llama_counts_match_the_paper(size: str) -> None:
    layers, d, heads, hidden, published, how = LLAMA[size]
    # Per layer: q, k, v, o (4 d²), SwiGLU gate/up/down (3 d f), two RMSNorms; untied embeddings.
    expected = 2 * LLAMA_VOCAB * d + layers * (4 * d * d + 3 * d * hidden + 2 * d) + d
    info = size_info(size, "llama", LLAMA_VOCAB)
    assert info["num_parameters"] == expected
    cfg = info["hf_config"]
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"]) == (layers, d, heads)
    assert cfg["intermediate_size"] == hidden and cfg["vocab_size"] == LLAMA_VOCAB
    assert printed(expected, published, how) == published


def test_llama_counts_exactly() -> None:
    # The released checkpoints' sizes (e.g. 6,738,415,616 for 7B).
    counts = {s: size_info(s, "llama", LLAMA_VOCAB)["num_parameters"] for s in LLAMA}
    assert counts == {"llama-7b": 6_738_415_616, "llama-13b": 13_015_864_320,
                      "llama-33b": 32_528_943_616, "llama-65b": 65_285_660_672}


def test_llama_swiglu_rule_and_lr() -> None:
    # int(2/3 x 4 x 4096) = 10922, rounded up to a multiple of 256: 43 x 256 = 11008.
    assert swiglu_width(4 * 4096, 256) == 11008
    assert swiglu_width(256) == 192  # our own sizes keep a multiple of 64
    assert [SIZES[s].lr for s in LLAMA] == [3e-4, 3e-4, 1.5e-4, 1.5e-4]
    assert all(SIZES[s].min_lr == pytest.approx(0.1 * SIZES[s].lr, rel=1e-12) for s in LLAMA)


@pytest.mark.parametrize("size", list(PALM))
def test_palm_counts_match_the_paper(size: str) -> None:
    layers, d, heads, published, how = PALM[size]
    q = heads * 256
    # Per layer: q and o (2 d q), one shared key and value head (2 d 256), SwiGLU 3 d 4d, one
    # bias-free LayerNorm; the shared embedding once; a final norm.
    expected = PALM_VOCAB * d + layers * (2 * d * q + 2 * d * 256 + 3 * d * 4 * d + d) + d
    info = size_info(size, "palm", PALM_VOCAB)
    assert info["num_parameters"] == expected
    cfg = info["hf_config"]
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"]) == (layers, d, heads)
    assert (cfg["head_dim"], cfg["num_key_value_heads"], cfg["intermediate_size"]) == (256, 1, 4 * d)
    assert cfg["tie_word_embeddings"] is True and cfg["attention_bias"] is False
    assert cfg["logit_scale"] == pytest.approx(d**-0.5)
    assert printed(expected, published, how) == published


def test_palm_540b_heads_are_narrower_than_d_model() -> None:
    shape = SIZES["palm-540b"]
    assert shape.heads * shape.head_dim == 12288 != shape.d_model
    assert size_info("palm-540b", "palm", PALM_VOCAB)["num_parameters"] == 540_356_474_880


def test_palm_lr_is_adafactor_step_in_adamw_terms() -> None:
    assert SIZES["palm-8b"].lr == pytest.approx(1e-2 / 64) and SIZES["palm-8b"].min_lr == 0.0
    assert SIZES["palm-tiny"].lr == pytest.approx(1.25e-3)


def test_shape_derives_head_dim_and_swiglu_width_once() -> None:
    shape = Shape(layers=2, d_model=64, heads=4, ffn=256)
    assert (shape.head_dim, shape.swiglu_ffn) == (16, 192)
    assert shape == Shape(layers=2, d_model=64, heads=4, ffn=256, head_dim=16, swiglu_ffn=192)
    assert Shape(**shape.as_dict()) == shape  # checkpoint manifests round-trip


def test_tiny_twins_build_and_run() -> None:
    llama = build_model("llama", SIZES["llama-tiny"], vocab_size=256, seq_length=16, seed=0)
    assert llama.model.layers[0].mlp.gate_proj.weight.shape == (256, 64)  # 2/3 x 256 = 170 -> 256
    palm = build_model("palm", SIZES["palm-tiny"], vocab_size=256, seq_length=16, seed=0)
    attn = palm.model.layers[0].self_attn
    assert attn.q_proj.weight.shape == (4 * 32, 64) and attn.k_proj.weight.shape == (32, 64)
    assert attn.o_proj.weight.shape == (64, 4 * 32)
    assert palm.model.layers[0].mlp.gate_proj.weight.shape == (256, 64)
    for model in (llama, palm):
        assert model(torch.randint(0, 256, (2, 16))).logits.shape == (2, 16, 256)


def test_palm_init_stds() -> None:
    # Wide enough that each matrix's sample std is within 2% of its target.
    shape = Shape(layers=2, d_model=256, heads=4, ffn=1024, init="palm", head_dim=128, swiglu_ffn=1024)
    model = build_model("palm", shape, vocab_size=2048, seq_length=16, seed=5)
    params = dict(model.named_parameters())
    layer = "model.layers.1."
    assert params["model.embed_tokens.weight"].std().item() == pytest.approx(1.0, rel=0.02)
    assert params[layer + "self_attn.q_proj.weight"].std().item() == pytest.approx(1 / 16, rel=0.02)
    assert params[layer + "self_attn.o_proj.weight"].std().item() == pytest.approx(1 / math.sqrt(512), rel=0.02)
    assert params[layer + "mlp.down_proj.weight"].std().item() == pytest.approx(1 / 32, rel=0.02)
    assert torch.all(params[layer + "input_layernorm.weight"] == 1.0)
    assert model.config.logit_scale == pytest.approx(1 / 16)
    # Without PaLM's init the palm block keeps unscaled logits (GPT-NeoX's init, small embeddings).
    assert hf_config("palm", SIZES["nano"], 512, 32).logit_scale == 1.0


def test_gpt_neox_block_rejects_an_explicit_head_dim() -> None:
    with pytest.raises(PythiaReproError, match="heads x head_dim = d_model"):
        hf_config("gpt-neox", SIZES["palm-tiny"], 256, 16)


def test_model_info_cli_for_a_palm_size() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pythia_repro.cli", "model-info", "--size", "palm-8b", "--arch", "palm",
         "--tokenizer-size", str(PALM_VOCAB), "--json"],
        check=True, capture_output=True, text=True,
    ).stdout
    info = json.loads(out)
    assert info["num_parameters"] == 8_632_012_800 and info["padded_vocab_size"] == PALM_VOCAB
    assert info["shape"]["head_dim"] == 256


@pytest.mark.parametrize("size", [s for s in SIZES if s.startswith(("llama-", "palm-"))])
def test_memory_requests_count_llama_and_palm_shapes_exactly(size: str) -> None:
    # The torch-free count the rules' memory requests use, against the meta-device model's.
    arch, vocab = ("llama", LLAMA_VOCAB) if size.startswith("llama") else ("palm", PALM_VOCAB)
    if size.endswith("-tiny"):
        vocab = 512
    assert SIZES[size].approx_parameters(vocab, arch) == size_info(size, arch, vocab)["num_parameters"]
