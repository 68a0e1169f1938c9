"""Verbs of the models stage: `model-info`."""

from __future__ import annotations

import argparse
import json

from pythia_repro.models.sizes import ARCHS, NEOX_TOKENIZER_SIZE, SIZES


def _run(args: argparse.Namespace) -> None:
    # Imported here: torch + transformers take seconds, which every other verb would pay at start-up.
    from pythia_repro.models.build import size_info

    info = size_info(args.size, args.arch, args.tokenizer_size, args.seq_length)
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
