"""Verbs of the models stage: `model-info`."""

from __future__ import annotations

import argparse
import json

from pythia_repro.models.sizes import ARCHS, NEOX_TOKENIZER_SIZE, SIZES, padded_vocab_size


def model_info(size: str, arch: str = "gpt-neox", tokenizer_size: int = NEOX_TOKENIZER_SIZE,
               seq_length: int = 2048) -> dict:
    """Parameter count and `transformers` config of a built-in size, without allocating it."""
    # Imported here: torch + transformers take seconds, which every other verb would pay at start-up.
    from pythia_repro.models.build import count_parameters, flops_per_token, meta_model

    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; known: {', '.join(SIZES)}")
    shape = SIZES[size]
    vocab = padded_vocab_size(tokenizer_size, shape["model_parallel"])
    model = meta_model(arch, shape, vocab, seq_length)
    embedding = model.get_input_embeddings().weight.numel()
    return {
        "size": size,
        "arch": arch,
        "num_parameters": count_parameters(model),
        "non_embedding_parameters": count_parameters(model) - embedding,
        "padded_vocab_size": vocab,
        "flops_per_token": flops_per_token(model, shape, seq_length),
        "shape": shape,
        "hf_config": model.config.to_dict(),
    }


def _run(args: argparse.Namespace) -> None:
    info = model_info(args.size, args.arch, args.tokenizer_size, args.seq_length)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        print(f"{info['size']} ({info['arch']}): {info['num_parameters']:,} parameters, "
              f"vocab {info['padded_vocab_size']}, {info['flops_per_token']:.3e} FLOPs/token")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("model-info", help="parameter count and transformers config of a size")
    p.add_argument("--size", required=True, help=f"one of: {', '.join(SIZES)}")
    p.add_argument("--arch", choices=ARCHS, default="gpt-neox")
    p.add_argument("--tokenizer-size", type=int, default=NEOX_TOKENIZER_SIZE,
                   help="tokenizer entries before padding (GPT-NeoX-20B: 50277)")
    p.add_argument("--seq-length", type=int, default=2048)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_run)
