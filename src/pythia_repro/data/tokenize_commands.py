"""Verbs of the tokenization stage: `tokenizer`, `tokenize`, `merge-tokens`."""

from __future__ import annotations

import argparse
import json
import sys

from pythia_repro.config import load_suite


def _tokenizer(args: argparse.Namespace) -> None:
    from pythia_repro.data.tokenizer import build_tokenizer

    suite = load_suite(args.config)
    summary = build_tokenizer(
        suite.config["tokenizer"], args.input, args.output, suite.config["corpus"]["on_malformed"]
    )
    print(f"tokenizer: wrote {args.output}: {json.dumps(summary)}", file=sys.stderr)


def _tokenize(args: argparse.Namespace) -> None:
    from pythia_repro.data import tokenize

    tokenize.set_workers(args.workers or tokenize.default_workers())
    stats = tokenize.tokenize_files(args.input, args.tokenizer, args.output_prefix, args.on_malformed)
    print(f"tokenize: wrote {args.output_prefix}.bin/.idx: {json.dumps(stats)}", file=sys.stderr)


def _merge_tokens(args: argparse.Namespace) -> None:
    from pythia_repro.data.tokenize import merge_token_files

    stats = merge_token_files(args.inputs, args.output_prefix)
    print(f"merge-tokens: wrote {args.output_prefix}.bin/.idx: {json.dumps(stats)}", file=sys.stderr)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("tokenizer", help="train, copy or download the suite's tokenizer.json")
    p.add_argument("--config", required=True, help="suite config (uses its tokenizer and corpus keys)")
    p.add_argument("--input", nargs="+", default=[], metavar="SHARD", help="corpus shards to train on")
    p.add_argument("--output", required=True, help="tokenizer.json to write")
    p.set_defaults(handler=_tokenizer)

    p = subparsers.add_parser("tokenize", help="corpus shards -> GPT-NeoX token file PREFIX.bin/.idx")
    p.add_argument("--input", nargs="+", required=True, metavar="FILE", help="shards, tokenized in this order")
    p.add_argument("--tokenizer", required=True, help="tokenizer.json")
    p.add_argument("--output-prefix", required=True, help="writes PREFIX.bin, PREFIX.idx, PREFIX.stats.json")
    p.add_argument("--workers", type=int, default=None, help="threads for BPE (default: all available cores)")
    p.add_argument("--on-malformed", choices=["error", "skip"], default="error")
    p.set_defaults(handler=_tokenize)

    p = subparsers.add_parser("merge-tokens", help="concatenate token files in order into one")
    p.add_argument("--inputs", nargs="+", required=True, metavar="PREFIX", help="token file prefixes, in order")
    p.add_argument("--output-prefix", required=True, help="writes PREFIX.bin and PREFIX.idx")
    p.set_defaults(handler=_merge_tokens)
