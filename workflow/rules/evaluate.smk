# Evaluation stage: lm_eval on every evaluated checkpoint ({ROOT}/eval/{model}/step{N}.json, all
# configured tasks x num_fewshot in one job), then one tidy table and one figure per task x n-shot.
# Our own offline tasks (lambada_heldout on the held-out documents) and the index of the
# harness's task folders are written once per suite into {ROOT}/eval/tasks.

from pythia_repro.evaluate.aggregate import figure_name
from pythia_repro.evaluate.suite_tasks import HELDOUT_TASK, heldout_sources

EVAL = f"{ROOT}/eval"
EVAL_TASKS_DIR = f"{EVAL}/tasks"
EVAL_CFG = SUITE.config["evaluate"]
EVAL_ON_GPU = str(EVAL_CFG["device"]).startswith("cuda")
EVAL_FIGURES = [
    (task, shots, f"{EVAL}/figures/{figure_name(task, shots)}")
    for task in EVAL_CFG["tasks"]
    for shots in EVAL_CFG["num_fewshot"]
]


def eval_records():
    return [f"{EVAL}/{m.name}/step{s}.json" for m in SUITE.models for s in SUITE.eval_steps(m.name)]


def evaluate_targets():
    return [f"{EVAL}/results.csv", f"{EVAL}/results.parquet"] + [f for _, _, f in EVAL_FIGURES]


def eval_mem_mb(wildcards):
    """The exported weights, activations and the harness; ~1.5x the checkpoint plus runtime."""
    return 4000 + 3 * EXPORT_BYTES * SUITE.approx_parameters(wildcards.model) // (2 * 2**20)


rule eval_tasks:
    input:
        [str(p) for p in heldout_sources(SUITE)] if HELDOUT_TASK in EVAL_CFG["tasks"] else [],
    output:
        directory(EVAL_TASKS_DIR),
    log:
        f"{ROOT}/logs/eval/tasks.log",
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "{CLI} eval-tasks --config {SUITE_CONFIG} --output {output} > {log} 2>&1"


rule evaluate:
    input:
        model=f"{EXPORT}/{{model}}/step{{step}}",
        tasks=EVAL_TASKS_DIR,
    output:
        f"{EVAL}/{{model}}/step{{step}}.json",
    wildcard_constraints:
        model=MODEL_NAMES,
        step=r"\d+",
    log:
        f"{ROOT}/logs/eval/{{model}}/step{{step}}.log",
    threads: 1
    resources:
        mem_mb=eval_mem_mb,
        runtime=240,
        **({"gpu": 1} if EVAL_ON_GPU else {}),
    shell:
        "{CLI} evaluate --config {SUITE_CONFIG} --model {wildcards.model} --step {wildcards.step}"
        " --input {input.model} --tasks-dir {input.tasks} --output {output} > {log} 2>&1"


rule aggregate_eval:
    input:
        eval_records(),
    output:
        csv=f"{EVAL}/results.csv",
        parquet=f"{EVAL}/results.parquet",
        figures=[
            report(path, category="Evaluation", subcategory=task, labels={"task": task, "n-shot": str(shots)})
            for task, shots, path in EVAL_FIGURES
        ],
    log:
        f"{ROOT}/logs/eval/aggregate.log",
    resources:
        mem_mb=4000,
    shell:
        "{CLI} aggregate-eval --config {SUITE_CONFIG} --eval-dir {EVAL} --csv {output.csv}"
        " --parquet {output.parquet} --figures-dir {EVAL}/figures > {log} 2>&1"
