"""Build a suite model as a Hugging Face `transformers` module, initialised as GPT-NeoX did.

We train the `transformers` classes themselves rather than an own re-implementation: export is
then `save_pretrained`, logits are identical by construction, and the attention kernels
(SDPA, flash-attn 2 when installed) are the ones the library maintains.

- gpt-neox: `GPTNeoXForCausalLM` with Pythia's settings (25% rotary, parallel residual, untied).
- llama:    `LlamaForCausalLM` (pre-norm RMSNorm, SwiGLU, full rotary, no biases, untied).
- palm:     `CohereForCausalLM`, the `transformers` class with PaLM's block: one bias-free
            LayerNorm feeding attention and MLP in parallel, SwiGLU, shared input/output
            embeddings; with one key/value head it is multi-query attention. Cohere's logit_scale
            is PaLM's 1/sqrt(d) on the shared-embedding logits when the size has PaLM's init
            (embeddings normal(1)); with GPT-NeoX's init it is 1.
"""

from __future__ import annotations

import math

import torch
from transformers import AutoModelForCausalLM, CohereConfig, GPTNeoXConfig, LlamaConfig, PretrainedConfig

from pythia_repro.errors import PythiaReproError
from pythia_repro.models.sizes import ARCHS, NEOX_TOKENIZER_SIZE, SIZES, Shape

EOD_ID = 0  # <|endoftext|> in the GPT-NeoX-20B tokenizer and in the BPEs we train


def hf_config(arch: str, shape: Shape, vocab_size: int, seq_length: int) -> PretrainedConfig:
    """The `transformers` config of a model of `shape` (a row of the size table)."""
    d, layers, heads = shape.d_model, shape.layers, shape.heads
    common = dict(
        vocab_size=vocab_size,
        hidden_size=d,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=seq_length,
        bos_token_id=EOD_ID,
        eos_token_id=EOD_ID,
        initializer_range=0.02,
    )
    if arch == "gpt-neox":
        if shape.head_dim * heads != d:
            raise PythiaReproError(f"gpt-neox blocks need heads x head_dim = d_model; got {heads} x "
                                   f"{shape.head_dim} != {d} (explicit head_dim is for llama and palm)")
        return GPTNeoXConfig(
            **common,
            intermediate_size=shape.ffn,
            hidden_act="gelu",
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25},
            layer_norm_eps=1e-5,
            use_parallel_residual=True,
            tie_word_embeddings=False,
            attention_bias=True,
            hidden_dropout=0.0,
            attention_dropout=0.0,
            classifier_dropout=0.0,
        )
    if arch == "llama":
        return LlamaConfig(
            **common,
            head_dim=shape.head_dim,
            intermediate_size=shape.swiglu_ffn,
            num_key_value_heads=heads,
            hidden_act="silu",
            rms_norm_eps=1e-5,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            attention_bias=False,
            mlp_bias=False,
            tie_word_embeddings=False,
        )
    if arch == "palm":
        return CohereConfig(
            **common,
            pad_token_id=None,
            head_dim=shape.head_dim,
            intermediate_size=shape.swiglu_ffn,
            num_key_value_heads=1,
            hidden_act="silu",
            layer_norm_eps=1e-5,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            attention_bias=False,
            tie_word_embeddings=True,
            # PaLM scales the logits of its shared normal(1) embedding by 1/sqrt(d) (Section 5).
            logit_scale=d**-0.5 if shape.init == "palm" else 1.0,
            use_qk_norm=False,
        )
    raise PythiaReproError(f"unknown architecture {arch!r}; choose one of {ARCHS}")


# Output projections of each block: GPT-NeoX initialises these with wang_init / scaled normal.
_OUTPUT_LAYERS = ("attention.dense", "mlp.dense_4h_to_h", "self_attn.o_proj", "mlp.down_proj")


def init_weights(model: torch.nn.Module, shape: Shape, seed: int) -> None:
    """GPT-NeoX v1.0 initialisation (megatron/model/init_functions.py), or PaLM's.

    small:  small_init std = sqrt(2 / (5 d)) for every matrix and embedding, wang_init
            std = 2 / (L sqrt(d)) for the block output projections (70m..2.8b).
    normal: normal(0.02), and scaled normal 0.02 / sqrt(2 L) for output projections (6.9b, 12b).
    palm:   PaLM (Chowdhery et al. 2022, Section 5): kernels "fan-in variance scaling",
            std = 1 / sqrt(d_in); the input embedding normal(1), as no norm precedes it.
    Biases zero, norm weights one.
    """
    d, layers = shape.d_model, shape.layers
    if shape.init == "small":
        std, out_std = math.sqrt(2 / (5 * d)), 2 / (layers * math.sqrt(d))
    else:
        std, out_std = 0.02, 0.02 / math.sqrt(2 * layers)
    embedding = model.get_input_embeddings().weight
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() == 1:
                # LayerNorm/RMSNorm weights are 1, every bias 0.
                param.fill_(1.0 if name.endswith("weight") else 0.0)
                continue
            if shape.init == "palm":
                # nn.Linear weights are (out, in); an untied output embedding is a kernel too.
                target = 1.0 if param is embedding else 1 / math.sqrt(param.shape[1])
            else:
                target = out_std if any(f"{layer}.weight" in name for layer in _OUTPUT_LAYERS) else std
            values = torch.empty(param.shape, dtype=torch.float32).normal_(0.0, target, generator=generator)
            param.copy_(values)


def build_model(
    arch: str,
    shape: Shape,
    vocab_size: int,
    seq_length: int,
    seed: int,
    attn_implementation: str = "sdpa",
) -> torch.nn.Module:
    """A freshly initialised float32 model (the trainer casts for mixed precision)."""
    config = hf_config(arch, shape, vocab_size, seq_length)
    model = AutoModelForCausalLM.from_config(config, attn_implementation=attn_implementation, dtype=torch.float32)
    init_weights(model, shape, seed)
    return model


def count_parameters(model: torch.nn.Module) -> int:
    """Distinct parameters (tied input/output embeddings count once)."""
    return sum(p.numel() for p in model.parameters())


def meta_model(arch: str, shape: Shape, vocab_size: int, seq_length: int) -> torch.nn.Module:
    """The model on the meta device: shapes without memory, for counting a 12B model."""
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(hf_config(arch, shape, vocab_size, seq_length))


def flops_per_token(model: torch.nn.Module, shape: Shape, seq_length: int) -> float:
    """PaLM's model FLOPs per token (Appendix B): 6N + 12 L H Q T, N without the input embedding."""
    embedding = model.get_input_embeddings().weight.numel()
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    n = count_parameters(model) - (0 if tied else embedding)
    return 6 * n + 12 * shape.layers * shape.heads * shape.head_dim * seq_length


def size_info(size: str, arch: str = "gpt-neox", tokenizer_size: int = NEOX_TOKENIZER_SIZE,
              seq_length: int = 2048) -> dict:
    """Parameter count, FLOPs per token and `transformers` config of a built-in size, on the meta
    device (no memory, so a 12B model is counted in a second)."""
    if size not in SIZES:
        raise PythiaReproError(f"unknown size {size!r}; known: {', '.join(SIZES)}")
    shape = SIZES[size]
    vocab = shape.padded_vocab(tokenizer_size)
    model = meta_model(arch, shape, vocab, seq_length)
    embedding = model.get_input_embeddings().weight.numel()
    return {
        "size": size,
        "arch": arch,
        "num_parameters": count_parameters(model),
        "non_embedding_parameters": count_parameters(model) - embedding,
        "padded_vocab_size": vocab,
        "flops_per_token": flops_per_token(model, shape, seq_length),
        "shape": shape.as_dict(),
        "hf_config": model.config.to_dict(),
    }
