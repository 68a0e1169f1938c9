"""Verbs of the corpus step: `synth-corpus`."""

from __future__ import annotations

import argparse
import sys

from pythia_repro.config import load_suite
from pythia_repro.data.synthetic import SyntheticSpec, write_corpus


def _synth_corpus(args: argparse.Namespace) -> None:
    spec = SyntheticSpec.from_config(load_suite(args.config).config)
    manifest = write_corpus(spec, args.out_dir)
    train, dups = manifest["train"], manifest["duplicates"]
    print(
        f"synth-corpus: {train['documents']} train documents in {spec.num_shards} shards "
        f"({len(train['empty_documents'])} empty, {len(dups['exact_pairs'])} exact and "
        f"{len(dups['near_pairs'])} near duplicates planted), {manifest['heldout']['documents']} held out "
        f"-> {args.out_dir}",
        file=sys.stderr,
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synth-corpus",
        help="write the synthetic mini-Pile (train shards, held-out file, manifest) of a suite config",
    )
    p.add_argument("--config", required=True, help="suite config (YAML); reads corpus.synthetic")
    p.add_argument("--out-dir", required=True,
                   help="writes train_NN.jsonl.zst, heldout.jsonl and manifest.json here")
    p.set_defaults(handler=_synth_corpus)
