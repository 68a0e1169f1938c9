"""Verbs of the analysis stage (the case studies): `memorization`, `memorization-merge`,
`memorization-report`; `term-counts`, `term-counts-merge`, `arithmetic-tasks`, `arithmetic-eval`,
`term-frequency-report`, `triviaqa-counts`, `triviaqa-report`; `bias-tasks`, `bias-eval`, `bias-report`.
Parsing and calls only (analysis/stage.py)."""

from __future__ import annotations

import argparse
import json
import logging

from pythia_repro.config import load_suite


def _term_counts(args: argparse.Namespace) -> None:
    from pythia_repro.analysis.stage import count_part

    info = count_part(load_suite(args.config), args.data, args.from_step, args.to_step, args.output, args.workers)
    print(json.dumps(info))


def _term_counts_merge(args: argparse.Namespace) -> None:
    from pythia_repro.analysis.stage import merge_counts

    rows = merge_counts(load_suite(args.config), args.inputs, args.output)
    print(json.dumps({"parts": len(args.inputs), "rows": rows, "output": args.output}))


def _arithmetic_tasks(args: argparse.Namespace) -> None:
    from pythia_repro.analysis.stage import write_arithmetic_task_dir

    info = write_arithmetic_task_dir(load_suite(args.config), args.output)
    print(json.dumps({"tasks": info["tasks"]}))


def _arithmetic_eval(args: argparse.Namespace) -> None:
    from pythia_repro.analysis.stage import arithmetic_section
    from pythia_repro.evaluate.run import evaluate_checkpoint

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    suite = load_suite(args.config)
    evaluate_checkpoint(suite, args.model, args.step, args.input, args.output, tasks_dir=args.tasks_dir,
                        samples=args.samples, section=arithmetic_section(suite))


def _term_frequency_report(args: argparse.Namespace) -> None:
    from pythia_repro.analysis.stage import term_frequency_report

    summary = term_frequency_report(load_suite(args.config), args.output_dir)
    print(json.dumps(summary["final_step"]))


def _triviaqa_counts(args: argparse.Namespace) -> None:
    from pythia_repro.analysis.stage import count_triviaqa_part

    print(json.dumps(count_triviaqa_part(load_suite(args.config), args.data, args.from_step, args.to_step,
                                         args.tasks_dir, args.output, args.workers)))


def _triviaqa_report(args: argparse.Namespace) -> None:
    from pythia_repro.analysis.stage import triviaqa_report

    summary = triviaqa_report(load_suite(args.config), args.output_dir)
    print(json.dumps(summary["final_step"]))


def _memorization(args: argparse.Namespace) -> None:
    from pythia_repro.analysis.stage import score_memorization

    print(json.dumps(score_memorization(load_suite(args.config), args.model, args.step, args.slice, args.output,
                                        model_dir=args.input)))


def _memorization_merge(args: argparse.Namespace) -> None:
    from pythia_repro.analysis.stage import merge_memorization

    print(json.dumps(merge_memorization(load_suite(args.config), args.model, args.step, args.inputs, args.output)))


def _memorization_report(args: argparse.Namespace) -> None:
    from pythia_repro.analysis.stage import memorization_report

    summary = memorization_report(load_suite(args.config), args.output_dir)
    print(json.dumps({m: {k: v for k, v in e.items() if not isinstance(v, (dict, list))}
                      for m, e in summary.get("models", {}).items()}, default=str))


def _bias_tasks(args: argparse.Namespace) -> None:
    from pythia_repro.analysis.stage import write_bias_task_dir

    info = write_bias_task_dir(load_suite(args.config), args.output)
    print(json.dumps({"source": info["source"], "tasks": info["tasks"]}))


def _bias_eval(args: argparse.Namespace) -> None:
    from pythia_repro.analysis.stage import bias_section
    from pythia_repro.evaluate.run import evaluate_checkpoint

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    suite = load_suite(args.config)
    evaluate_checkpoint(suite, args.model, args.step, args.input, args.output, tasks_dir=args.tasks_dir,
                        section=bias_section(suite), extra_tasks_dirs=args.extra_tasks_dir or ())


def _bias_report(args: argparse.Namespace) -> None:
    from pythia_repro.analysis.stage import bias_report

    summary = bias_report(load_suite(args.config), args.output_dir)
    print(json.dumps(summary.get("intervention_effects", []), default=str))


def _config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="suite config (YAML)")


def _checkpoint_eval(p: argparse.ArgumentParser, tasks_verb: str) -> None:
    """The flags of a case study's evaluation of one exported checkpoint (as `evaluate` has them)."""
    _config(p)
    p.add_argument("--model", required=True)
    p.add_argument("--step", required=True, type=int)
    p.add_argument("--input", required=True, help="exported model directory")
    p.add_argument("--tasks-dir", required=True, help=f"directory from `{tasks_verb}`")
    p.add_argument("--output", required=True, help="result JSON (the format of `evaluate`)")


def _step_range(p: argparse.ArgumentParser) -> None:
    """The flags of a verb that counts in the training samples of one data order's step range."""
    _config(p)
    p.add_argument("--data", required=True, help="data order: standard or deduped (-seed{N} for other seeds)")
    p.add_argument("--from-step", type=int, required=True, help="first step counted")
    p.add_argument("--to-step", type=int, required=True, help="counts cover the samples of steps [from, to)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("term-counts", help="Pythia's number counts in the training samples of a step range")
    _step_range(p)
    p.add_argument("--output", required=True, help="part file (.parquet: term, count)")
    p.add_argument("--workers", type=int, default=1, help="counting processes")
    p.set_defaults(handler=_term_counts)

    p = subparsers.add_parser("term-counts-merge", help="cumulative counts per checkpoint from the parts")
    _config(p)
    p.add_argument("--inputs", nargs="+", required=True, help="part files of one data order (term or TriviaQA)")
    p.add_argument("--output", required=True, help="counts.parquet (step, term, count)")
    p.set_defaults(handler=_term_counts_merge)

    p = subparsers.add_parser("triviaqa-counts", help="TriviaQA question/answer entity co-occurrence in a step range")
    _step_range(p)
    p.add_argument("--tasks-dir", required=True, help="directory from `arithmetic-tasks` (holds the questions)")
    p.add_argument("--output", required=True, help="part file (.parquet: term = question_id, count)")
    p.add_argument("--workers", type=int, default=1, help="counting processes")
    p.set_defaults(handler=_triviaqa_counts)

    p = subparsers.add_parser("arithmetic-tasks",
                              help="the arithmetic (and TriviaQA) lm-eval tasks of analysis.term_frequency")
    _config(p)
    p.add_argument("--output", required=True, help="task directory (published atomically)")
    p.set_defaults(handler=_arithmetic_tasks)

    p = subparsers.add_parser("arithmetic-eval",
                              help="lm_eval of the arithmetic (and TriviaQA) tasks on an exported checkpoint")
    _checkpoint_eval(p, "arithmetic-tasks")
    p.add_argument("--samples", required=True, help="per-document records (JSON lines)")
    p.set_defaults(handler=_arithmetic_eval)

    p = subparsers.add_parser(
        "memorization", help="k/l memorization scores of the training sequences seen before a checkpoint",
        description="Greedy continuation of each training sequence's first k tokens vs its next l tokens, "
                    "with the exported checkpoint; equals Hugging Face generate (Pythia's definition).")
    _config(p)
    p.add_argument("--model", required=True)
    p.add_argument("--step", required=True, type=int, help="checkpoint; sequences of steps 0..step-1 are scored")
    p.add_argument("--slice", metavar="I/K", help="score slice I (0-based) of K of those sequences")
    p.add_argument("--input", help="exported model directory (default: the suite's export of that step)")
    p.add_argument("--output", required=True, help="scores .parquet: index, score, memorized")
    p.set_defaults(handler=_memorization)

    p = subparsers.add_parser("memorization-merge", help="one scores file and its summary from the slices")
    _config(p)
    p.add_argument("--model", required=True)
    p.add_argument("--step", required=True, type=int)
    p.add_argument("--inputs", nargs="+", required=True, help="slice files")
    p.add_argument("--output", required=True, help="scores .parquet (the JSON summary is written beside it)")
    p.set_defaults(handler=_memorization_merge)

    p = subparsers.add_parser("memorization-report", help="Poisson analysis, tables and figures of memorization")
    _config(p)
    p.add_argument("--output-dir", required=True)
    p.set_defaults(handler=_memorization_report)

    p = subparsers.add_parser("bias-tasks", help="WinoBias and CrowS-Pairs gender tasks of analysis.gender_bias")
    _config(p)
    p.add_argument("--output", required=True, help="task directory (published atomically)")
    p.set_defaults(handler=_bias_tasks)

    p = subparsers.add_parser("bias-eval", help="lm_eval of the bias tasks (and LAMBADA) on an exported checkpoint")
    _checkpoint_eval(p, "bias-tasks")
    p.add_argument("--extra-tasks-dir", action="append", help="more task folders (the suite's eval tasks)")
    p.set_defaults(handler=_bias_eval)

    p = subparsers.add_parser("bias-report", help="bias over the end of training, the intervention's effect, figures")
    _config(p)
    p.add_argument("--output-dir", required=True)
    p.set_defaults(handler=_bias_report)

    p = subparsers.add_parser("term-frequency-report", help="accuracy vs term frequency, the Δ table and figures")
    _config(p)
    p.add_argument("--output-dir", required=True)
    p.set_defaults(handler=_term_frequency_report)

    p = subparsers.add_parser("triviaqa-report", help="TriviaQA accuracy vs co-occurrence, the Δ table and figures")
    _config(p)
    p.add_argument("--output-dir", required=True)
    p.set_defaults(handler=_triviaqa_report)
