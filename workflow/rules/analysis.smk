# Analysis stage, the case studies: term frequency (number counts in the data each checkpoint has
# seen, one job per range of steps, against few-shot arithmetic accuracy; TriviaQA against entity
# co-occurrence), memorization and gender bias.


rule term_counts:
    input:
        order=order_of_data,
        tokenizer=path(SUITE.tokenizer_file),
    output:
        path(LAYOUT.term_counts_part("{data}", "{a}", "{b}")),
    log:
        path(LAYOUT.log("analysis", "term_counts_{data}_{a}-{b}")),
    conda:
        "../../envs/eval.yaml"
    threads: SUITE.term_frequency.workers
    params:
        config=SUITE_CONFIG,
    shell:
        "pythia-repro term-counts --config {params.config} --data {wildcards.data} --from-step {wildcards.a}"
        " --to-step {wildcards.b} --workers {threads} --output {output} 2> {log}"


rule term_counts_merge:
    input:
        term_count_parts,
    output:
        path(LAYOUT.term_counts("{data}")),
    log:
        path(LAYOUT.log("analysis", "term_counts_merge_{data}")),
    conda:
        "../../envs/eval.yaml"
    params:
        config=SUITE_CONFIG,
    shell:
        "pythia-repro term-counts-merge --config {params.config} --inputs {input} --output {output} 2> {log}"


rule arithmetic_tasks:
    output:
        directory(path(LAYOUT.arithmetic_tasks_dir)),
    log:
        path(LAYOUT.log("analysis", "arithmetic_tasks")),
    conda:
        "../../envs/eval.yaml"
    params:
        config=SUITE_CONFIG,
    shell:
        "pythia-repro arithmetic-tasks --config {params.config} --output {output} 2> {log}"


rule arithmetic_eval:
    input:
        model=path(LAYOUT.export_dir("{model}", "{step}")),
        tasks=path(LAYOUT.arithmetic_tasks_dir),
    output:
        record=path(LAYOUT.arithmetic_record("{model}", "{step}")),
        samples=path(LAYOUT.arithmetic_samples("{model}", "{step}")),
    log:
        path(LAYOUT.log("analysis", "arithmetic_eval/{model}/step{step}")),
    conda:
        "../../envs/eval.yaml"
    resources:
        **resources.model_gpus_resource(SUITE, SUITE.term_frequency.device.startswith("cuda")),
        mem_mb=lambda wc: resources.eval_mem_mb(SUITE, wc.model),
        runtime=240,
    params:
        config=SUITE_CONFIG,
    shell:
        "pythia-repro arithmetic-eval --config {params.config} --model {wildcards.model} --step {wildcards.step}"
        " --input {input.model} --tasks-dir {input.tasks} --output {output.record} --samples {output.samples}"
        " > {log} 2>&1"


rule term_frequency_report:
    input:
        counts=[path(LAYOUT.term_counts(d)) for d in SUITE.term_count_orders],
        samples=arithmetic_samples(),
    output:
        summary=path(LAYOUT.term_frequency_report_dir / "summary.json"),
        delta=path(LAYOUT.term_frequency_report_dir / "delta.csv"),
        accuracy=path(LAYOUT.term_frequency_report_dir / "accuracy.csv"),
        figures=[path(f) for f in TERM_FREQUENCY_FIGURES],
    log:
        path(LAYOUT.log("analysis", "term_frequency_report")),
    conda:
        "../../envs/eval.yaml"
    params:
        config=SUITE_CONFIG,
        out_dir=lambda wc, output: os.path.dirname(output.summary),
    shell:
        "pythia-repro term-frequency-report --config {params.config} --output-dir {params.out_dir} > {log} 2>&1"


# TriviaQA variant: question/answer co-occurrence counted per range of steps like the term counts,
# merged per data order by the same verb; its questions are evaluated inside arithmetic_eval (one
# model load per checkpoint).
rule triviaqa_counts:
    input:
        order=order_of_data,
        tokenizer=path(SUITE.tokenizer_file),
        tasks=path(LAYOUT.arithmetic_tasks_dir),
    output:
        path(LAYOUT.triviaqa_counts_part("{data}", "{a}", "{b}")),
    log:
        path(LAYOUT.log("analysis", "triviaqa_counts_{data}_{a}-{b}")),
    conda:
        "../../envs/eval.yaml"
    threads: SUITE.term_frequency.workers
    params:
        config=SUITE_CONFIG,
    shell:
        "pythia-repro triviaqa-counts --config {params.config} --data {wildcards.data} --from-step {wildcards.a}"
        " --to-step {wildcards.b} --tasks-dir {input.tasks} --workers {threads} --output {output} 2> {log}"


rule triviaqa_counts_merge:
    input:
        triviaqa_count_parts,
    output:
        path(LAYOUT.triviaqa_counts("{data}")),
    log:
        path(LAYOUT.log("analysis", "triviaqa_counts_merge_{data}")),
    conda:
        "../../envs/eval.yaml"
    params:
        config=SUITE_CONFIG,
    shell:
        "pythia-repro term-counts-merge --config {params.config} --inputs {input} --output {output} 2> {log}"


rule triviaqa_report:
    input:
        counts=triviaqa_counts(),
        samples=arithmetic_samples(),
        tasks=path(LAYOUT.arithmetic_tasks_dir),
    output:
        summary=path(LAYOUT.triviaqa_report_dir / "summary.json"),
        questions=path(LAYOUT.triviaqa_report_dir / "questions.csv"),
        delta=path(LAYOUT.triviaqa_report_dir / "delta.csv"),
        binned=path(LAYOUT.triviaqa_report_dir / "binned.csv"),
        accuracy_figure=report(
            path(LAYOUT.triviaqa_report_dir / "accuracy_vs_frequency.png"),
            caption="../../report/triviaqa_accuracy.rst",
            category="4 Term frequency",
            subcategory="TriviaQA",
        ),
        delta_figure=report(
            path(LAYOUT.triviaqa_report_dir / "delta.png"),
            caption="../../report/triviaqa_delta.rst",
            category="4 Term frequency",
            subcategory="TriviaQA",
        ),
    log:
        path(LAYOUT.log("analysis", "triviaqa_report")),
    conda:
        "../../envs/eval.yaml"
    params:
        config=SUITE_CONFIG,
        out_dir=lambda wc, output: os.path.dirname(output.summary),
    shell:
        "pythia-repro triviaqa-report --config {params.config} --output-dir {params.out_dir} > {log} 2>&1"


# Memorization: one job per (model, checkpoint, slice of the sequences seen), merged per checkpoint.
rule memorization:
    input:
        model=path(LAYOUT.export_dir("{model}", "{step}")),
        data=model_data,
    output:
        path(LAYOUT.memorization_slice("{model}", "{step}", "{slice}", "{slices}")),
    log:
        path(LAYOUT.log("analysis", "memorization/{model}/step{step}_{slice}of{slices}")),
    conda:
        "../../envs/eval.yaml"
    resources:
        **resources.model_gpus_resource(SUITE, SUITE.memorization.device.startswith("cuda")),
        mem_mb=lambda wc: resources.eval_mem_mb(SUITE, wc.model),
        runtime=240,
    params:
        config=SUITE_CONFIG,
    shell:
        "pythia-repro memorization --config {params.config} --model {wildcards.model} --step {wildcards.step}"
        " --slice {wildcards.slice}/{wildcards.slices} --input {input.model} --output {output} > {log} 2>&1"


rule memorization_merge:
    input:
        memorization_slices,
    output:
        scores=path(LAYOUT.memorization_scores("{model}", "{step}")),
        summary=path(LAYOUT.memorization_summary("{model}", "{step}")),
    log:
        path(LAYOUT.log("analysis", "memorization_merge/{model}/step{step}")),
    conda:
        "../../envs/eval.yaml"
    params:
        config=SUITE_CONFIG,
    shell:
        "pythia-repro memorization-merge --config {params.config} --model {wildcards.model}"
        " --step {wildcards.step} --inputs {input} --output {output.scores} > {log} 2>&1"


rule memorization_report:
    input:
        memorization_scores(),
    output:
        summary=path(LAYOUT.memorization_report_dir / "summary.json"),
        table=path(LAYOUT.memorization_report_dir / "memorization.csv"),
        figures=MEMORIZATION_REPORT[2:],
    log:
        path(LAYOUT.log("analysis", "memorization_report")),
    conda:
        "../../envs/eval.yaml"
    params:
        config=SUITE_CONFIG,
        out_dir=lambda wc, output: os.path.dirname(output.summary),
    shell:
        "pythia-repro memorization-report --config {params.config} --output-dir {params.out_dir} > {log} 2>&1"


# Gender bias: WinoBias and CrowS-Pairs (and the suite's LAMBADA-style task) on each intervention
# and its base over the intervention window.
rule bias_tasks:
    output:
        directory(path(LAYOUT.bias_tasks_dir)),
    log:
        path(LAYOUT.log("analysis", "bias_tasks")),
    conda:
        "../../envs/eval.yaml"
    params:
        config=SUITE_CONFIG,
    shell:
        "pythia-repro bias-tasks --config {params.config} --output {output} 2> {log}"


rule bias_eval:
    input:
        model=path(LAYOUT.export_dir("{model}", "{step}")),
        tasks=path(LAYOUT.bias_tasks_dir),
        eval_tasks=path(LAYOUT.eval_tasks_dir),
    output:
        path(LAYOUT.bias_record("{model}", "{step}")),
    log:
        path(LAYOUT.log("analysis", "bias_eval/{model}/step{step}")),
    conda:
        "../../envs/eval.yaml"
    resources:
        **resources.model_gpus_resource(SUITE, SUITE.gender_bias.device.startswith("cuda")),
        mem_mb=lambda wc: resources.eval_mem_mb(SUITE, wc.model),
        runtime=240,
    params:
        config=SUITE_CONFIG,
    shell:
        "pythia-repro bias-eval --config {params.config} --model {wildcards.model} --step {wildcards.step}"
        " --input {input.model} --tasks-dir {input.tasks} --extra-tasks-dir {input.eval_tasks}"
        " --output {output} > {log} 2>&1"


rule bias_report:
    input:
        bias_records(),
    output:
        summary=path(LAYOUT.bias_report_dir / "summary.json"),
        table=path(LAYOUT.bias_report_dir / "bias.csv"),
    log:
        path(LAYOUT.log("analysis", "bias_report")),
    conda:
        "../../envs/eval.yaml"
    params:
        config=SUITE_CONFIG,
        out_dir=lambda wc, output: os.path.dirname(output.summary),
    shell:
        "pythia-repro bias-report --config {params.config} --output-dir {params.out_dir} > {log} 2>&1"
