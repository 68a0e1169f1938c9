# Evaluation stage: lm_eval on every evaluated checkpoint (all configured tasks x num_fewshot in
# one job), then one tidy table and one figure per task x n-shot. Our own offline tasks
# (lambada_heldout on the held-out documents) and the index of the harness's task folders are
# written once per suite into the eval tasks directory.


rule eval_tasks:
    input:
        heldout_inputs(),
    output:
        directory(path(LAYOUT.eval_tasks_dir)),
    log:
        path(LAYOUT.log("eval", "tasks")),
    conda:
        "../../envs/eval.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        config=SUITE_CONFIG,
    shell:
        "pythia-repro eval-tasks --config {params.config} --output {output} > {log} 2>&1"


rule benchmark_data:
    output:
        directory(path(LAYOUT.benchmarks_dir)),
    log:
        path(LAYOUT.log("eval", "benchmark_data")),
    conda:
        "../../envs/eval.yaml"
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        config=SUITE_CONFIG,
    shell:
        "pythia-repro benchmark-data --config {params.config} --output {output} > {log} 2>&1"


rule evaluate:
    input:
        model=path(LAYOUT.export_dir("{model}", "{step}")),
        tasks=path(LAYOUT.eval_tasks_dir),
        benchmarks=benchmarks_input(),
    output:
        path(LAYOUT.eval_record("{model}", "{step}")),
    log:
        path(LAYOUT.log("eval", "{model}/step{step}")),
    conda:
        "../../envs/eval.yaml"
    threads: 1
    resources:
        **resources.model_gpus_resource(SUITE, SUITE.evaluate.on_gpu),
        mem_mb=lambda wc: resources.eval_mem_mb(SUITE, wc.model),
        runtime=240,
    params:
        config=SUITE_CONFIG,
        benchmarks=benchmarks_flag,
    shell:
        "pythia-repro evaluate --config {params.config} --model {wildcards.model} --step {wildcards.step}"
        " --input {input.model} --tasks-dir {input.tasks} {params.benchmarks} --output {output} > {log} 2>&1"


rule aggregate_eval:
    input:
        eval_records(),
    output:
        csv=path(LAYOUT.eval_table("csv")),
        parquet=path(LAYOUT.eval_table("parquet")),
        figures=[f for _, _, f in EVAL_FIGURES],
    log:
        path(LAYOUT.log("eval", "aggregate")),
    conda:
        "../../envs/eval.yaml"
    resources:
        mem_mb=4000,
    params:
        config=SUITE_CONFIG,
        eval_dir=lambda wc, output: os.path.dirname(output.csv),
        figures_dir=lambda wc, output: os.path.dirname(output.figures[0]),
    shell:
        "pythia-repro aggregate-eval --config {params.config} --eval-dir {params.eval_dir} --csv {output.csv}"
        " --parquet {output.parquet} --figures-dir {params.figures_dir} > {log} 2>&1"
