"""The `pythia-repro` command line: parse, dispatch, nothing else.

Each stage package owns its verbs in one `commands.py` module exposing `register(subparsers)`; a verb's
handler receives the parsed args and calls the stage's code.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

from pythia_repro.errors import PythiaReproError

# Verb modules in DAG order, each with register(subparsers).
COMMAND_MODULES = (
    "data.commands",
    "models.commands",
    "train.commands",
    "export.commands",
    "evaluate.commands",
    "analysis.commands",
    "figures.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pythia-repro", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name in COMMAND_MODULES:
        importlib.import_module(f"pythia_repro.{name}").register(sub)
    return parser


_ENVIRONMENT = {
    errno.ENOSPC: "no space left on device; free space on that filesystem (or move results_dir) and rerun: "
                  "finished outputs are kept and partial writes were discarded",
    errno.EDQUOT: "disk quota exceeded; free space under your quota (or move results_dir) and rerun",
    errno.EROFS: "read-only file system; point results_dir (or this output) at a writable filesystem and rerun",
    errno.EACCES: "permission denied; check the owner and mode of the path and its folders (ls -ld), "
                  "or choose a results_dir you can write",
    errno.EPERM: "operation not permitted; check the owner and mode of the path (ls -ld), "
                 "or choose a results_dir you can write",
}


def environment_message(exc: OSError) -> str | None:
    """One line for an OSError the user's environment caused (full disk, read-only or
    unwritable path, missing output folder), naming the path; None for anything else."""
    path = exc.filename if exc.filename is not None else exc.filename2
    where = os.fsdecode(path) if path is not None else "(path not reported)"
    if exc.errno in _ENVIRONMENT:
        return f"{where}: {_ENVIRONMENT[exc.errno]}"
    if exc.errno == errno.ENOENT and path is not None:
        folder = os.path.dirname(os.path.abspath(where))
        if not os.path.isdir(folder):  # the folder to write into is gone (moved, unmounted, a typo)
            return (f"{where}: folder {folder} does not exist; create it (or fix the path, check the "
                    "filesystem is mounted) and rerun")
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.handler(args)
    except PythiaReproError as exc:
        # Bad input carries the file/key in its message; a traceback would bury it. Anything
        # else is a bug or an environment failure and keeps its traceback, save the
        # environment failures below, which are said in one line too.
        print(f"pythia-repro {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        message = environment_message(exc)
        if message is None:
            raise
        print(f"pythia-repro {args.verb}: error: {message}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"pythia-repro {args.verb}: error: out of memory; give the job more memory (its resources "
              "in the config or profile) or fewer parallel jobs, and rerun", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
