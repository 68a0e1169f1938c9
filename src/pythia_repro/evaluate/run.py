"""Evaluate one exported checkpoint with the LM Evaluation Harness.

One job per checkpoint runs every configured task (`evaluate.tasks`) at every `num_fewshot`,
loading the model once: `lm_eval.simple_evaluate` with `lm_eval.models.huggingface.HFLM` on the
exported directory, tasks resolved by `TaskManager(include_path=...)` so our own offline tasks
(lambada_heldout) sit beside the harness's (lambada_openai, piqa, ...).

The output JSON keeps, per n-shot run, the harness's own result dict (results, versions, n-shot,
configs, higher_is_better, n-samples, config, ...) and adds our metadata: model, size, arch,
data variant, step, tokens seen (= step x global batch x sequence length), seconds, documents.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from pythia_repro.atomic import atomic_file, write_text
from pythia_repro.errors import PythiaReproError
from pythia_repro.evaluate.suite_tasks import needs_own_tasks, task_manager, write_task_dir
from pythia_repro.resources import model_parallel

log = logging.getLogger(__name__)


def checkpoint_metadata(suite, model: str, step: int) -> dict:
    spec = suite.model(model)
    return {
        "suite": suite.name,
        "model": spec.name,
        "size": spec.size,
        "arch": spec.arch,
        "data": spec.data,
        "seed": spec.seed,
        "intervention": spec.substitution,
        "base": spec.base,
        "branch_step": spec.branch_step,
        "step": step,
        "tokens_seen": suite.tokens_seen(step),
    }


def _to_json(obj) -> str:
    from lm_eval.utils import handle_non_serializable

    return json.dumps(obj, indent=2, default=handle_non_serializable, ensure_ascii=False)


def make_lm(model_dir: str | Path, device: str, batch_size, dtype: str = "auto", parallelize: bool = False):
    """lm-eval's HF model; `parallelize` splits its layers over every visible GPU (lm-eval passes
    accelerate's device_map="auto"), for a model too large for one."""
    from lm_eval.models.huggingface import HFLM

    placement = {"parallelize": True} if parallelize else {"device": device}
    return HFLM(pretrained=str(model_dir), batch_size=batch_size, dtype=dtype, **placement)


def run_harness(lm, tasks: list[str], num_fewshot: int, manager, limit=None, log_samples: bool = False) -> dict:
    """One simple_evaluate call: the harness's result dict (samples included when asked)."""
    from lm_eval import simple_evaluate

    results = simple_evaluate(
        model=lm,
        tasks=list(tasks),
        num_fewshot=num_fewshot,
        task_manager=manager,
        limit=limit,
        log_samples=log_samples,
    )
    if results is None:  # not rank 0
        raise RuntimeError("lm_eval returned no results (not rank 0?)")
    return results


def evaluate_checkpoint(
    suite,
    model: str,
    step: int,
    model_dir: str | Path,
    output: str | Path,
    *,
    tasks_dir: str | Path | None = None,
    samples: str | Path | None = None,
    section=None,
    benchmarks_dir: str | Path | None = None,
    extra_tasks_dirs: tuple[str | Path, ...] | list[str | Path] = (),
) -> dict:
    """Evaluate `model_dir` on all configured tasks x n-shots; writes and returns the result record.

    `section` (an EvaluateSection) replaces the suite's `evaluate` settings: the case studies run
    their own tasks through this same path. `benchmarks_dir` (from `benchmark-data`) maps each
    benchmark to the task that runs it: the stock one when its data is cached, else our offline
    copy; the record says which (`metadata.task_sources`).
    """
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise PythiaReproError(f"{model_dir}: no config.json; not an exported model directory")
    ev = section or suite.evaluate
    tasks, shots = list(ev.tasks), list(ev.num_fewshot)
    sources = {t: {"task": t, "data": "harness"} for t in tasks}
    extra_dirs = list(extra_tasks_dirs)
    if benchmarks_dir is not None:
        from pythia_repro.evaluate.benchmarks import INFO_FILE

        built = json.loads((Path(benchmarks_dir) / INFO_FILE).read_text())
        for t in tasks:
            run = built["run"].get(t, t)
            if run in built["built"]:
                sources[t] = {"task": run, "data": built["built"][run]}
        tasks = [sources[t]["task"] for t in tasks]
        extra_dirs.append(benchmarks_dir)
    meta = checkpoint_metadata(suite, model, step)
    export_info = model_dir / "export.json"
    if export_info.is_file():
        info = json.loads(export_info.read_text())
        if info.get("model") != meta["model"] or int(info.get("step", -1)) != step:
            raise PythiaReproError(f"{export_info}: export of {info.get('model')} step {info.get('step')}, "
                             f"expected {meta['model']} step {step}")
        meta["export_dtype"] = info.get("dtype")

    with tempfile.TemporaryDirectory(prefix="pythia-eval-tasks-") as scratch:
        if tasks_dir is None and needs_own_tasks(suite):
            tasks_dir = Path(scratch) / "tasks"
            write_task_dir(suite, tasks_dir)
        manager = task_manager(tasks, tasks_dir, extra_dirs)

        started = time.time()
        lm = make_lm(model_dir, ev.device, ev.batch_size, parallelize=model_parallel(suite, model, ev.device))
        loaded = time.time()
        runs, all_samples, documents = [], [], 0
        for n in shots:
            res = run_harness(lm, tasks, n, manager, limit=ev.limit, log_samples=samples is not None)
            for task, task_samples in (res.pop("samples", None) or {}).items():
                for s in task_samples:
                    all_samples.append({"task": task, "num_fewshot": n, **s})
            documents += sum(v.get("effective", v.get("original", 0)) if isinstance(v, dict) else int(v)
                             for v in res.get("n-samples", {}).values())
            runs.append({"num_fewshot": n, **res})
        finished = time.time()

    meta.update({
        "tasks": tasks,
        "task_sources": sources,
        "num_fewshot": shots,
        "model_dir": str(model_dir),
        "documents": documents,
        "seconds_load": round(loaded - started, 3),
        "seconds_eval": round(finished - loaded, 3),
        "documents_per_second": round(documents / max(finished - loaded, 1e-9), 3),
        "lm_eval_version": version("lm_eval"),
        "transformers_version": version("transformers"),
        "torch_version": version("torch"),
    })
    record = {"metadata": meta, "runs": runs}
    text = _to_json(record)
    if samples is not None:
        with atomic_file(samples, "w") as fh:
            for s in all_samples:
                fh.write(json.dumps(s, default=str, ensure_ascii=False) + "\n")
    write_text(output, text + "\n")
    return json.loads(text)
