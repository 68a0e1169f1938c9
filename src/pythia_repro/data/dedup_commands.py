"""Verbs of the near-dedup stage: `dedup-signatures`, `dedup-clusters`, `dedup-apply`.

One signature job per shard, one cluster job over all signature files, one apply job per shard
(workflow/rules/data.smk); the algorithm and file formats are in pythia_repro.data.dedup.
"""

from __future__ import annotations

import argparse
import sys

from pythia_repro.config import load_suite
from pythia_repro.data.dedup import DedupParams, apply_keep, cluster_shards, shard_signatures


def _suite_params(config: str) -> tuple[DedupParams, str]:
    suite = load_suite(config)
    return DedupParams.from_config(suite.config.get("dedup", {})), suite.config["corpus"].get("on_malformed", "error")


def _signatures(args: argparse.Namespace) -> None:
    params, on_malformed = _suite_params(args.config)
    meta = shard_signatures(args.input, args.shard_index, args.output, params, on_malformed)
    stats = meta["read_stats"]
    print(f"dedup-signatures: shard {args.shard_index}: {meta['documents']:,} documents "
          f"({stats['empty']:,} empty, {stats['malformed_skipped']:,} malformed skipped), "
          f"{params.bands} bands x {params.rows} rows, {meta['seconds']:.1f}s -> {args.output}", file=sys.stderr)


def _clusters(args: argparse.Namespace) -> None:
    params, _ = _suite_params(args.config)
    report = cluster_shards(args.signatures, params, args.keep, args.report,
                            max_memory_bytes=int(args.max_memory_gb * (1 << 30)))
    print(f"dedup-clusters: {report['documents_in']:,} documents -> {report['documents_out']:,} kept; "
          f"{report['duplicates_removed']:,} duplicates in {report['duplicate_clusters']:,} clusters removed "
          f"({100 * report['fraction_bytes_removed']:.2f}% of bytes) -> {args.keep}, {args.report}", file=sys.stderr)


def _apply(args: argparse.Namespace) -> None:
    _suite_params(args.config)  # validates the config like the other verbs
    out = apply_keep(args.input, args.keep, args.shard_index, args.output)
    print(f"dedup-apply: shard {args.shard_index}: {out['documents_in']:,} -> {out['documents_out']:,} documents "
          f"-> {args.output}", file=sys.stderr)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("dedup-signatures", help="MinHash signatures and LSH band hashes of one shard")
    p.add_argument("--config", required=True, help="suite config (dedup.*, corpus.on_malformed)")
    p.add_argument("--input", required=True, help="corpus shard (.jsonl, .jsonl.gz, .jsonl.zst)")
    p.add_argument("--shard-index", type=int, required=True, help="position of the shard in corpus order")
    p.add_argument("--output", required=True, help="signature file (.npz)")
    p.set_defaults(handler=_signatures)

    p = subparsers.add_parser("dedup-clusters", help="near-duplicate clusters over all shards' signatures")
    p.add_argument("--config", required=True)
    p.add_argument("--signatures", nargs="+", required=True, help="every shard's signature file")
    p.add_argument("--keep", required=True, help="output: kept documents per shard (.npz)")
    p.add_argument("--report", required=True, help="output: counts and parameters (.json)")
    p.add_argument("--max-memory-gb", type=float, default=8.0,
                   help="bucket memory per pass; larger corpora split each band into hash ranges (default 8)")
    p.set_defaults(handler=_clusters)

    p = subparsers.add_parser("dedup-apply", help="write one shard's kept documents")
    p.add_argument("--config", required=True)
    p.add_argument("--input", required=True, help="the corpus shard the signatures were computed from")
    p.add_argument("--keep", required=True, help="dedup-clusters' keep file")
    p.add_argument("--shard-index", type=int, required=True)
    p.add_argument("--output", required=True, help="deduplicated shard (.jsonl, .jsonl.gz, .jsonl.zst)")
    p.set_defaults(handler=_apply)
