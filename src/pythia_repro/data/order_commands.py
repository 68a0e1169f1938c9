"""Verbs of the data-order stage: `order` (build GPT-NeoX's index maps), `batch` (the tokens of a
step's global batch) and `locate` (where in training a sample or document was)."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from pythia_repro.atomic import atomic_file
from pythia_repro.data.batch import PreshuffledOrder, TrainingOrder
from pythia_repro.data.indexed import IndexedDataset
from pythia_repro.data.order import build_index_mappings, gpt_neox_num_samples


def _order(args: argparse.Namespace) -> None:
    dataset = IndexedDataset(args.data_prefix)
    num_samples = gpt_neox_num_samples(args.train_iters, args.global_batch_size)
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


def _open_order(args: argparse.Namespace) -> TrainingOrder | PreshuffledOrder:
    if args.preshuffled:
        return PreshuffledOrder(args.data_prefix, args.global_batch_size, args.seq_length)
    missing = [flag for flag, value in (("--train-iters", args.train_iters), ("--seed", args.seed),
                                        ("--seq-length", args.seq_length)) if value is None]
    if missing:
        raise ValueError(f"{', '.join(missing)} needed to find the index maps (or pass --preshuffled)")
    return TrainingOrder(args.data_prefix, args.train_iters, args.global_batch_size, args.seq_length, args.seed)


def _decode(tokenizer_json: str, rows: np.ndarray, label: str) -> None:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(tokenizer_json)
    for k, row in enumerate(rows):
        print(f"===== {label} {k} =====")
        print(tokenizer.decode(row.tolist(), skip_special_tokens=False))


def _batch(args: argparse.Namespace) -> None:
    if args.output is None and args.decode is None:
        raise ValueError("nothing to do: give --output OUT.npy and/or --decode TOKENIZER_JSON")
    order = _open_order(args)
    try:
        tokens = order.batch(args.step)
    except IndexError as exc:
        raise ValueError(str(exc)) from None
    if args.output is not None:
        with atomic_file(args.output, "wb") as fh:
            np.save(fh, tokens)
        print(f"[batch] step {args.step}: {tokens.shape[0]} samples x {tokens.shape[1]} tokens -> {args.output}",
              file=sys.stderr)
    if args.decode is not None:
        _decode(args.decode, tokens, f"step {args.step} position")


def _locate(args: argparse.Namespace) -> None:
    if not (args.training_sample or args.sample or args.document):
        raise ValueError("nothing to locate: give --training-sample, --sample or --document")
    order = _open_order(args)
    try:
        result = _locations(order, args)
    except IndexError as exc:
        raise ValueError(str(exc)) from None
    print(json.dumps(result, indent=2))


def _locations(order: TrainingOrder | PreshuffledOrder, args: argparse.Namespace) -> dict[str, list]:
    result: dict[str, list] = {}
    if args.training_sample:
        result["training_samples"] = [order.locate_training_index(j).as_dict() for j in args.training_sample]
    if args.sample or args.document:
        if args.preshuffled:
            raise ValueError("--sample and --document need the index maps, not a pre-shuffled file")
    if args.sample:
        found = order.locate_samples(args.sample)
        result["samples"] = [found[int(i)].as_dict() for i in args.sample]
    if args.document:
        result["documents"] = [{"document": d, "size": int(order.dataset.sizes[d]),
                                "samples": order.locate_document(d)} for d in args.document]
    if args.train_iters is not None:  # the spare 0.5% of samples lie past the last step
        for entries in result.values():
            for entry in entries:
                for loc in [entry, *entry.get("samples", [])]:
                    if "step" in loc:
                        loc["trained"] = loc["step"] < args.train_iters
    return result


def _add_order_flags(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument("--data-prefix", required=True, help="token file prefix (PREFIX.bin, PREFIX.idx)")
    p.add_argument("--train-iters", type=int, required=required, help="training steps (names the maps)")
    p.add_argument("--global-batch-size", type=int, required=True, help="samples per step")
    p.add_argument("--seq-length", type=int, required=required, help="tokens per sample, less one")
    p.add_argument("--seed", type=int, required=required, help="the run's seed (GPT-NeoX `seed`)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "order", help="build GPT-NeoX v1.0's data order (doc/sample/shuffle index maps) for a token file",
        description="Writes PREFIX_train_0_indexmap_{N}ns_{S}sl_{SEED}s_{doc,sample,shuffle}_idx.npy "
                    "with N = ceil(train_iters * global_batch_size * 1.005), as GPT-NeoX v1.0 would; "
                    "skips the work when all three exist and fit. Prints a JSON summary.")
    _add_order_flags(p, required=True)
    p.add_argument("--force", action="store_true", help="rebuild even if the maps exist")
    p.set_defaults(handler=_order)

    p = subparsers.add_parser(
        "batch", help="the tokens of one step's global batch, as a (B, S+1) int64 .npy",
        description="Row k of the output is position k of the global batch of --step. From a token "
                    "file and its index maps (built by `order`), or with --preshuffled from "
                    "EleutherAI's pre-shuffled file (PREFIX's item j = training sample j).")
    _add_order_flags(p, required=False)
    p.add_argument("--step", type=int, required=True, help="training step (0-based)")
    p.add_argument("--preshuffled", action="store_true",
                   help="PREFIX is a pre-shuffled file of training samples; --train-iters/--seed not needed")
    p.add_argument("--output", help="write the batch here (.npy)")
    p.add_argument("--decode", metavar="TOKENIZER_JSON", help="print each sample's text, decoded")
    p.set_defaults(handler=_batch)

    p = subparsers.add_parser(
        "locate", help="where in training a sample or document was: step and position in the batch",
        description="Prints JSON. --training-sample J: sample J of training order (step J // B). "
                    "--sample I: sample I of the unshuffled stream (row I of sample_idx). --document D: "
                    "every sample holding tokens of document D. 'trained' tells whether the step is "
                    "below --train-iters (GPT-NeoX builds 0.5%% spare samples).")
    _add_order_flags(p, required=False)
    p.add_argument("--preshuffled", action="store_true", help="PREFIX is a pre-shuffled file")
    p.add_argument("--training-sample", type=int, nargs="+", metavar="J",
                   help="training-order sample index (the J-th sample the model saw)")
    p.add_argument("--sample", type=int, nargs="+", metavar="I",
                   help="unshuffled sample index (row I of sample_idx)")
    p.add_argument("--document", type=int, nargs="+", metavar="D",
                   help="document (item) index of the token file")
    p.set_defaults(handler=_locate)
