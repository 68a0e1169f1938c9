"""Verbs of the export stage: `export` (checkpoint -> transformers directory) and `upload`."""

from __future__ import annotations

import argparse
import json
import logging


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _export(args: argparse.Namespace) -> None:
    from pythia_repro.config import load_suite
    from pythia_repro.export.hf import export_suite_checkpoint

    _logging()
    suite = load_suite(args.config)
    info = export_suite_checkpoint(suite, args.model, args.step, args.output, force=args.force)
    print(json.dumps({k: info[k] for k in ("model", "step", "dtype", "architecture", "num_parameters") if k in info}))


def _upload(args: argparse.Namespace) -> None:
    from pythia_repro.config import load_suite
    from pythia_repro.export.upload import upload_checkpoint

    _logging()
    suite = load_suite(args.config)
    record = upload_checkpoint(suite, args.model, args.step, args.input, receipt=args.receipt)
    summary = {rev: r.get("commit") for rev, r in record["revisions"].items()}
    print(json.dumps({"target": record["target"], "repo_id": record["repo_id"], "revisions": summary}))


def _fetch(args: argparse.Namespace) -> None:
    from pythia_repro.config import load_suite
    from pythia_repro.export.fetch import fetch_revision

    _logging()
    print(json.dumps(fetch_revision(load_suite(args.config), args.model, args.step, args.output)))


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "fetch",
        help="put a published checkpoint (Hub revision step{N}, or a local step{N}/ folder) where an export goes",
        description="huggingface_hub.snapshot_download into the suite's fetch cache (resumable, retried; HF_TOKEN "
        "from the environment if set), then hard links at OUTPUT, which evaluation and the case studies read.",
    )
    p.add_argument("--config", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--step", required=True, type=int)
    p.add_argument("--output", required=True, help="checkpoint directory (published atomically)")
    p.set_defaults(handler=_fetch)

    p = subparsers.add_parser(
        "export",
        help="export a training checkpoint as a transformers model directory",
        description="Convert {model_dir}/checkpoints/step{N} (DeepSpeed, ZeRO 0-3) into a directory that "
        "AutoModelForCausalLM/AutoTokenizer.from_pretrained and `lm_eval --model hf` load.",
    )
    p.add_argument("--config", required=True, help="suite config (YAML)")
    p.add_argument("--model", required=True, help="model name, e.g. pythia-70m-deduped")
    p.add_argument("--step", required=True, type=int, help="checkpoint step")
    p.add_argument("--output", required=True, help="output directory (published atomically)")
    p.add_argument("--force", action="store_true", help="re-export even if OUTPUT already holds this export")
    p.set_defaults(handler=_export)

    p = subparsers.add_parser(
        "upload",
        help="upload an exported checkpoint to its revision (Hub, offline mirror, or none)",
        description="One repo per model ({upload.namespace}/{model}), branch step{N} per checkpoint, main = "
        "final step. Idempotent; Hub calls retried with backoff; the token is read from HF_TOKEN only.",
    )
    p.add_argument("--config", required=True, help="suite config (YAML)")
    p.add_argument("--model", required=True)
    p.add_argument("--step", required=True, type=int)
    p.add_argument("--input", required=True, help="exported model directory")
    p.add_argument("--receipt", required=True, help="receipt JSON written after a successful upload")
    p.set_defaults(handler=_upload)
