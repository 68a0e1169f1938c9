"""Rebuild src/pythia_repro/evaluate/reference/pythia_evals.csv from EleutherAI/pythia's published evals.

Usage: python bench/make_pythia_reference.py GIT_DIR [--commit REV]

GIT_DIR is a clone (bare is fine) of github.com/EleutherAI/pythia. The script reads
`evals/pythia-v1/pythia-{size}[-deduped]/{zero-shot,five-shot}/*.json` (lm-eval v0.3 records)
with `git show`, so nothing is checked out, and keeps the paper's tasks only (the records also
hold 57 MMLU subjects and CrowS-Pairs, which would make the table ~10x larger).

Facts the parser relies on (checked on commit a19eecb8, 2026-12-01):
- the standard 1b lives in `pythia-1b-bf16` (named pythia-1b here); the `-0.25MtokBS`,
  `-0.5MtokBS`, `-1MtokBS` folders are batch-size ablations and are skipped;
- the shot count comes from each record's `config.num_fewshot`: the 1b-bf16 zero-shot files are
  named `...-5shot_step*.json` although they are zero-shot runs;
- metric names are lm-eval v0.3's (`acc`, `acc_norm`, `ppl`), each with a `<name>_stderr`.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src/pythia_repro/evaluate/reference/pythia_evals.csv"
TASKS = ("lambada_openai", "piqa", "winogrande", "wsc", "arc_easy", "arc_challenge", "sciq", "logiqa")
SIZES = ("70m", "160m", "410m", "1b", "1.4b", "2.8b", "6.9b", "12b")
FOLDERS = {"zero-shot": 0, "five-shot": 5}
_STEP = re.compile(r"_step(\d+)\.json$")


def _git(git_dir: str, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", git_dir, *args], check=True, capture_output=True, text=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("git_dir")
    parser.add_argument("--commit", default="HEAD")
    args = parser.parse_args()
    commit = _git(args.git_dir, "rev-parse", args.commit).strip()
    rows = []
    for size in SIZES:
        for dedup in ("", "-deduped"):
            model = f"pythia-{size}{dedup}"
            folder = "pythia-1b-bf16" if model == "pythia-1b" else model
            for shots_dir, shots in FOLDERS.items():
                prefix = f"evals/pythia-v1/{folder}/{shots_dir}/"
                for path in _git(args.git_dir, "ls-tree", "--name-only", commit, prefix).split():
                    step = _STEP.search(path)
                    if step is None:
                        raise SystemExit(f"{path}: no _step<N>.json in the name")
                    record = json.loads(_git(args.git_dir, "show", f"{commit}:{path}"))
                    if record["config"]["num_fewshot"] != shots:
                        raise SystemExit(f"{path}: num_fewshot {record['config']['num_fewshot']} in {shots_dir}")
                    for task in TASKS:
                        for metric, value in sorted(record["results"].get(task, {}).items()):
                            if metric.endswith("_stderr"):
                                continue
                            stderr = record["results"][task].get(f"{metric}_stderr")
                            rows.append([model, int(step.group(1)), task, shots, metric, repr(float(value)),
                                         "" if stderr is None else repr(float(stderr))])
    rows.sort(key=lambda r: (r[0], r[3], r[2], r[4], r[1]))
    buf = io.StringIO()
    buf.write(f"# EleutherAI/pythia evals/pythia-v1 (lm-eval v0.3 results; pythia-1b = pythia-1b-bf16) "
              f"at commit {commit}, read {datetime.date.today().isoformat()} by bench/make_pythia_reference.py\n")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["model", "step", "task", "num_fewshot", "metric", "value", "stderr"])
    writer.writerows(rows)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(buf.getvalue())
    print(f"{OUT}: {len(rows)} rows, {OUT.stat().st_size} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
