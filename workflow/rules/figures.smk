# Figures stage: every figure of the Pythia paper the suite has data for, under figures/, as PNG and
# PDF, drawn from the stage outputs (tables, summaries); one rule per paper section, each one call of
# `pythia-repro paper-figures`. A case study that is off has no figures (its rule is not a target).
# Every figure and table is marked for the report (`snakemake --report`), captioned from report/*.rst.


rule figures_loss:
    input:
        final_segments(),
        path(LAYOUT.loss_figure),
    output:
        figures_outputs("loss"),
    log:
        path(LAYOUT.log("figures", "loss")),
    conda:
        "../../envs/eval.yaml"
    params:
        config=SUITE_CONFIG,
    shell:
        "pythia-repro paper-figures --config {params.config} --section loss > {log} 2>&1"


rule figures_evaluation:
    input:
        figures_inputs("evaluation"),
    output:
        figures_outputs("evaluation"),
    log:
        path(LAYOUT.log("figures", "evaluation")),
    conda:
        "../../envs/eval.yaml"
    params:
        config=SUITE_CONFIG,
    shell:
        "pythia-repro paper-figures --config {params.config} --section evaluation > {log} 2>&1"


rule figures_memorization:
    input:
        figures_inputs("memorization"),
    output:
        figures_outputs("memorization"),
    log:
        path(LAYOUT.log("figures", "memorization")),
    conda:
        "../../envs/eval.yaml"
    params:
        config=SUITE_CONFIG,
    shell:
        "pythia-repro paper-figures --config {params.config} --section memorization > {log} 2>&1"


rule figures_term_frequency:
    input:
        figures_inputs("term_frequency"),
    output:
        figures_outputs("term_frequency"),
    log:
        path(LAYOUT.log("figures", "term_frequency")),
    conda:
        "../../envs/eval.yaml"
    params:
        config=SUITE_CONFIG,
    shell:
        "pythia-repro paper-figures --config {params.config} --section term_frequency > {log} 2>&1"


rule figures_gender_bias:
    input:
        figures_inputs("gender_bias"),
    output:
        figures_outputs("gender_bias"),
    log:
        path(LAYOUT.log("figures", "gender_bias")),
    conda:
        "../../envs/eval.yaml"
    params:
        config=SUITE_CONFIG,
    shell:
        "pythia-repro paper-figures --config {params.config} --section gender_bias > {log} 2>&1"
