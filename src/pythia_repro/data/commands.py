"""Verbs of the data stage, in DAG order: `synth-corpus`; `tokenizer`, `tokenize`, `merge-tokens`;
`dedup-signatures`, `dedup-clusters`, `dedup-apply`; `order`, `batch`, `locate`.

Parsing and calls only; the work is in the modules beside this one (synthetic, tokenizer,
tokenize, dedup, order, batch).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import numpy as np

from pythia_repro.atomic import atomic_file
from pythia_repro.config import load_suite
from pythia_repro.data.batch import PreshuffledOrder, TrainingOrder, locations
from pythia_repro.data.batch_schedule import BatchSchedule
from pythia_repro.data.corpus import EMPTY_SHARD_POLICIES, MALFORMED_POLICIES, ReadPolicy
from pythia_repro.data.dedup import apply_keep, cluster_shards, shard_signatures
from pythia_repro.data.indexed import IndexedDataset
from pythia_repro.data.order import build_index_mappings
from pythia_repro.data.synthetic import write_corpus
from pythia_repro.errors import PythiaReproError


def _synth_corpus(args: argparse.Namespace) -> None:
    spec = load_suite(args.config).corpus.synthetic
    manifest = write_corpus(spec, args.out_dir)
    train, dups = manifest["train"], manifest["duplicates"]
    print(
        f"synth-corpus: {train['documents']} train documents in {spec.num_shards} shards "
        f"({len(train['empty_documents'])} empty, {len(dups['exact_pairs'])} exact and "
        f"{len(dups['near_pairs'])} near duplicates planted), {manifest['heldout']['documents']} held out "
        f"-> {args.out_dir}",
        file=sys.stderr,
    )


def _register_corpus(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synth-corpus",
        help="write the synthetic mini-Pile (train shards, held-out file, manifest) of a suite config",
    )
    p.add_argument("--config", required=True, help="suite config (YAML); reads corpus.synthetic")
    p.add_argument("--out-dir", required=True,
                   help="writes train_NN.jsonl.zst, heldout.jsonl and manifest.json here")
    p.set_defaults(handler=_synth_corpus)


def _tokenizer(args: argparse.Namespace) -> None:
    from pythia_repro.data.tokenizer import build_tokenizer

    suite = load_suite(args.config)
    summary = build_tokenizer(dataclasses.asdict(suite.tokenizer), args.input, args.output, suite.corpus.read_policy)
    print(f"tokenizer: wrote {args.output}: {json.dumps(summary)}", file=sys.stderr)


def _tokenize(args: argparse.Namespace) -> None:
    from pythia_repro.data import tokenize

    tokenize.set_workers(args.workers or tokenize.default_workers())
    policy = ReadPolicy(args.on_malformed, args.on_empty_shard)
    stats = tokenize.tokenize_files(args.input, args.tokenizer, args.output_prefix, policy)
    print(f"tokenize: wrote {args.output_prefix}.bin/.idx: {json.dumps(stats)}", file=sys.stderr)


def _merge_tokens(args: argparse.Namespace) -> None:
    from pythia_repro.data.tokenize import merge_token_files

    stats = merge_token_files(args.inputs, args.output_prefix)
    print(f"merge-tokens: wrote {args.output_prefix}.bin/.idx: {json.dumps(stats)}", file=sys.stderr)


def _register_tokenize(subparsers: argparse._SubParsersAction) -> None:
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
    p.add_argument("--on-malformed", choices=MALFORMED_POLICIES, default="error")
    p.add_argument("--on-empty-shard", choices=EMPTY_SHARD_POLICIES, default="warn")
    p.set_defaults(handler=_tokenize)

    p = subparsers.add_parser("merge-tokens", help="concatenate token files in order into one")
    p.add_argument("--inputs", nargs="+", required=True, metavar="PREFIX", help="token file prefixes, in order")
    p.add_argument("--output-prefix", required=True, help="writes PREFIX.bin and PREFIX.idx")
    p.set_defaults(handler=_merge_tokens)


def _suite_params(config: str):
    suite = load_suite(config)
    return suite.dedup, suite.corpus.read_policy


def _signatures(args: argparse.Namespace) -> None:
    params, policy = _suite_params(args.config)
    meta = shard_signatures(args.input, args.shard_index, args.output, params, policy)
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


def _register_dedup(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("dedup-signatures", help="MinHash signatures and LSH band hashes of one shard")
    p.add_argument("--config", required=True, help="suite config (dedup.*, corpus.on_malformed, corpus.on_empty_shard)")
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


def _order(args: argparse.Namespace) -> None:
    _from_suite(args, per_model=False)
    missing = [flag for flag, value in (("--train-iters", args.train_iters), ("--seq-length", args.seq_length),
                                        ("--seed", args.seed)) if value is None]
    if missing:
        raise PythiaReproError(f"{', '.join(missing)} needed (or --config S.yaml for all but --seed)")
    dataset = IndexedDataset(args.data_prefix)
    num_samples = args.batch_schedule.num_samples(args.train_iters)
    maps = build_index_mappings(args.data_prefix, dataset.sizes, num_samples, args.seq_length, args.seed,
                                force=args.force)
    print(json.dumps({
        "num_samples_requested": num_samples,
        "num_samples": int(maps.sample_idx.shape[0] - 1),
        "num_epochs": maps.num_epochs,
        "tokens_per_epoch": maps.tokens_per_epoch,
        "num_documents": len(dataset),
        "files": {kind: str(path) for kind, path in maps.paths.items()},
    }, indent=2))


def _from_suite(args: argparse.Namespace, per_model: bool = True) -> None:
    """--config S.yaml: the suite's train_iters, seq length and batch schedule (a batch ramp
    included), and with --model M (batch, locate) that model's data prefix and seed, for the
    flags not given explicitly; sets `args.batch_schedule`. An explicit --global-batch-size is
    one batch size for every step."""
    suite = None
    if args.config is None:
        if per_model and args.model is not None:
            raise PythiaReproError("--model needs --config (the suite it belongs to)")
    else:
        if per_model and args.model is None:
            raise PythiaReproError("--config needs --model: whose training run to look at")
        suite = load_suite(args.config)
        filled = {"train_iters": suite.train_iters, "seq_length": suite.seq_length}
        if per_model:
            spec = suite.model(args.model)
            filled.update(data_prefix=str(suite.layout.data_prefix(spec.data)), seed=spec.seed)
        for key, value in filled.items():
            if getattr(args, key) is None:
                setattr(args, key, value)
    if args.global_batch_size is not None:
        args.batch_schedule = BatchSchedule.constant(args.global_batch_size)
    else:
        args.batch_schedule = suite.batch_schedule if suite is not None else None
    missing = [flag for flag, value in (("--data-prefix", args.data_prefix),
                                        ("--global-batch-size", args.batch_schedule)) if value is None]
    if missing:
        raise PythiaReproError(f"{', '.join(missing)} needed (or --config S.yaml{' --model M' if per_model else ''})")


def _untrained(what: str, train_iters: int, allow: bool) -> None:
    """Refuse a step at or past train_iters, or (--allow-untrained) say so loudly."""
    if not allow:
        raise PythiaReproError(f"{what} is at or past train_iters ({train_iters:,}): training never reached "
                               "it (GPT-NeoX builds 0.5% spare samples); pass --allow-untrained to see it anyway")
    print(f'[batch] WARNING: {what} is past train_iters ({train_iters:,}): "trained": false; '
          "the model never saw these tokens", file=sys.stderr, flush=True)


def _open_order(args: argparse.Namespace) -> TrainingOrder | PreshuffledOrder:
    _from_suite(args)
    if args.preshuffled:
        return PreshuffledOrder(args.data_prefix, args.batch_schedule, args.seq_length)
    missing = [flag for flag, value in (("--train-iters", args.train_iters), ("--seed", args.seed),
                                        ("--seq-length", args.seq_length)) if value is None]
    if missing:
        raise PythiaReproError(f"{', '.join(missing)} needed to find the index maps (or pass --preshuffled)")
    return TrainingOrder(args.data_prefix, args.train_iters, args.batch_schedule, args.seq_length, args.seed)


def _decode(tokenizer_json: str, rows: np.ndarray, label: str) -> None:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(tokenizer_json)
    for k, row in enumerate(rows):
        print(f"===== {label} {k} =====")
        print(tokenizer.decode(row.tolist(), skip_special_tokens=False))


def _batch(args: argparse.Namespace) -> None:
    if args.output is None and args.decode is None:
        raise PythiaReproError("nothing to do: give --output OUT.npy and/or --decode TOKENIZER_JSON")
    order = _open_order(args)
    if args.step < 0:
        raise PythiaReproError(f"--step {args.step}: steps count from 0")
    if args.train_iters is not None and args.step >= args.train_iters:
        _untrained(f"--step {args.step}", args.train_iters, args.allow_untrained)
    try:
        tokens = order.batch(args.step)
    except IndexError as exc:
        raise PythiaReproError(str(exc)) from None
    if args.output is not None:
        with atomic_file(args.output, "wb") as fh:
            np.save(fh, tokens)
        print(f"[batch] step {args.step}: {tokens.shape[0]} samples x {tokens.shape[1]} tokens -> {args.output}",
              file=sys.stderr)
    if args.decode is not None:
        _decode(args.decode, tokens, f"step {args.step} position")


def _locate(args: argparse.Namespace) -> None:
    if not (args.training_sample or args.sample or args.document):
        raise PythiaReproError("nothing to locate: give --training-sample, --sample or --document")
    order = _open_order(args)
    if args.train_iters is not None:
        schedule = args.batch_schedule
        late = [j for j in args.training_sample or () if j >= schedule.samples_before(args.train_iters)]
        if late:
            _untrained(f"--training-sample {late[0]} (step {schedule.step_of(late[0])[0]})", args.train_iters,
                       args.allow_untrained)
    try:
        result = locations(order, training_samples=args.training_sample or (), samples=args.sample or (),
                           documents=args.document or (), train_iters=args.train_iters)
    except IndexError as exc:
        raise PythiaReproError(str(exc)) from None
    untrained = sum(1 for entries in result.values() for entry in entries
                    for loc in [entry, *entry.get("samples", [])] if loc.get("trained") is False)
    if untrained:
        print(f'[locate] WARNING: {untrained} location(s) past train_iters ({args.train_iters:,}) say '
              '"trained": false: spare samples the model never saw', file=sys.stderr, flush=True)
    print(json.dumps(result, indent=2))


def _add_order_flags(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument("--data-prefix", required=required, help="token file prefix (PREFIX.bin, PREFIX.idx)")
    p.add_argument("--train-iters", type=int, required=required, help="training steps (names the maps)")
    p.add_argument("--global-batch-size", type=int, required=required,
                   help="samples per step, every step (a suite's batch ramp comes with --config)")
    p.add_argument("--seq-length", type=int, required=required, help="tokens per sample, less one")
    p.add_argument("--seed", type=int, required=required, help="the run's seed (GPT-NeoX `seed`)")


def _register_order(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "order", help="build GPT-NeoX v1.0's data order (doc/sample/shuffle index maps) for a token file",
        description="Writes PREFIX_train_0_indexmap_{N}ns_{S}sl_{SEED}s_{doc,sample,shuffle}_idx.npy "
                    "with N = ceil(train_iters * global_batch_size * 1.005), as GPT-NeoX v1.0 would "
                    "(with a batch ramp: the samples of its steps x 1.005); skips the work when all "
                    "three exist and fit. Prints a JSON summary.")
    _add_order_flags(p, required=False)
    p.add_argument("--config", help="suite config: fills --train-iters, --seq-length and the batch "
                                    "schedule (training.batch_ramp included) not given explicitly")
    p.add_argument("--force", action="store_true", help="rebuild even if the maps exist")
    p.set_defaults(handler=_order)

    p = subparsers.add_parser(
        "batch", help="the tokens of one step's global batch, as a (B, S+1) int64 .npy",
        description="Row k of the output is position k of the global batch of --step. From a token "
                    "file and its index maps (built by `order`), or with --preshuffled from "
                    "EleutherAI's pre-shuffled file (PREFIX's item j = training sample j).")
    _add_order_flags(p, required=False)
    p.add_argument("--step", type=int, required=True, help="training step (0-based)")
    p.add_argument("--config", help="suite config: with --model, fills the flags above from that model's run")
    p.add_argument("--model", help="model of --config whose data order to read, e.g. pythia-70m")
    p.add_argument("--allow-untrained", action="store_true",
                   help="show steps at or past train_iters (spare samples; marked \"trained\": false)")
    p.add_argument("--preshuffled", action="store_true",
                   help="PREFIX is a pre-shuffled file of training samples; --train-iters/--seed not needed")
    p.add_argument("--output", help="write the batch here (.npy)")
    p.add_argument("--decode", metavar="TOKENIZER_JSON", help="print each sample's text, decoded")
    p.set_defaults(handler=_batch)

    p = subparsers.add_parser(
        "locate", help="where in training a sample or document was: step and position in the batch",
        description="Prints JSON. --training-sample J: sample J of training order (step J // B, or "
                    "by the suite's batch ramp). "
                    "--sample I: sample I of the unshuffled stream (row I of sample_idx). --document D: "
                    "every sample holding tokens of document D. 'trained' tells whether the step is "
                    "below --train-iters (GPT-NeoX builds 0.5%% spare samples).")
    _add_order_flags(p, required=False)
    p.add_argument("--preshuffled", action="store_true", help="PREFIX is a pre-shuffled file")
    p.add_argument("--config", help="suite config: with --model, fills the flags above from that model's run")
    p.add_argument("--model", help="model of --config whose data order to read, e.g. pythia-70m")
    p.add_argument("--allow-untrained", action="store_true",
                   help="show steps at or past train_iters (spare samples; marked \"trained\": false)")
    p.add_argument("--training-sample", type=int, nargs="+", metavar="J",
                   help="training-order sample index (the J-th sample the model saw)")
    p.add_argument("--sample", type=int, nargs="+", metavar="I",
                   help="unshuffled sample index (row I of sample_idx)")
    p.add_argument("--document", type=int, nargs="+", metavar="D",
                   help="document (item) index of the token file")
    p.set_defaults(handler=_locate)


def register(subparsers: argparse._SubParsersAction) -> None:
    for register_stage in (_register_corpus, _register_tokenize, _register_dedup, _register_order):
        register_stage(subparsers)
