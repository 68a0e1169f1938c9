"""Verbs of the figures stage: `paper-figures` (one paper section's figures, PNG + PDF, and its
report tables, from the stage outputs; the evaluation section also writes the Pythia parity table).
Parsing and calls only (figures/paper.py)."""

from __future__ import annotations

import argparse
import json

from pythia_repro.config import load_suite


def _paper_figures(args: argparse.Namespace) -> None:
    from pythia_repro.figures.stage import write_section

    written = write_section(load_suite(args.config), args.section)
    print(json.dumps({"section": args.section, "files": [str(p) for p in written]}))


def register(sub) -> None:
    from pythia_repro.figures.paper import SECTIONS

    p = sub.add_parser("paper-figures", help="draw one paper section's figures (PNG + PDF) and report tables")
    p.add_argument("--config", required=True, help="the suite's (resolved) config")
    p.add_argument("--section", required=True, choices=sorted(SECTIONS))
    p.set_defaults(handler=_paper_figures)
