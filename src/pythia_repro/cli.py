"""The `pythia-repro` command line: parse, dispatch, nothing else.

Each stage owns its verbs in a `*commands.py` module exposing `register(subparsers)`; a verb's
handler receives the parsed args and calls the stage's code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from pythia_repro.config import ConfigError

# Verb modules in DAG order, each with register(subparsers).
COMMAND_MODULES = (
    "data.corpus_commands",
    "data.tokenize_commands",
    "data.dedup_commands",
    "data.order_commands",
    "models.commands",
    "train.commands",
    "export.commands",
    "evaluate.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pythia-repro", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name in COMMAND_MODULES:
        importlib.import_module(f"pythia_repro.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.handler(args)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        # Domain errors carry the file/key in their message; a traceback would bury it.
        print(f"pythia-repro {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
