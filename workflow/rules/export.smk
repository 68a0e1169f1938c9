# Export and upload stage: each checkpoint to evaluate or publish becomes a transformers directory,
# then is published to its revision (branch step{N}; main = the final step) with a receipt. Input
# of an export is the marker of the training segment that wrote the checkpoint, so exports start
# as soon as that segment ends.


rule export:
    input:
        segment_of_checkpoint,
    output:
        directory(path(LAYOUT.export_dir("{model}", "{step}"))),
    log:
        path(LAYOUT.log("export", "{model}/step{step}")),
    wildcard_constraints:
        model=TRAINED_NAMES,
    conda:
        "../../envs/eval.yaml"
    resources:
        mem_mb=lambda wc: resources.export_mem_mb(SUITE, wc.model),
        runtime=60,
    params:
        config=SUITE_CONFIG,
    shell:
        "pythia-repro export --config {params.config} --model {wildcards.model} --step {wildcards.step}"
        " --output {output} > {log} 2>&1"


# HF_TOKEN (target hub) must be in the environment Snakemake runs in; jobs inherit it and the
# token never appears on a command line or in a log.
rule upload:
    input:
        path(LAYOUT.export_dir("{model}", "{step}")),
    output:
        path(LAYOUT.upload_receipt("{model}", "{step}")),
    log:
        path(LAYOUT.log("upload", "{model}/step{step}")),
    conda:
        "../../envs/eval.yaml"
    resources:
        mem_mb=2000,
        runtime=120,
    params:
        config=SUITE_CONFIG,
    shell:
        "pythia-repro upload --config {params.config} --model {wildcards.model} --step {wildcards.step}"
        " --input {input} --receipt {output} > {log} 2>&1"


# Published suites: revision step{N} of a Hub repository (or a local step{N}/ folder) fetched to
# where an export would be, one job per (model, revision); nothing is trained or exported.
rule fetch_revision:
    output:
        fetched_checkpoint(path(LAYOUT.export_dir("{model}", "{step}"))),
    log:
        path(LAYOUT.log("fetch", "{model}/step{step}")),
    wildcard_constraints:
        model=PUBLISHED_NAMES,
    conda:
        "../../envs/eval.yaml"
    resources:
        mem_mb=2000,
        runtime=240,
    params:
        config=SUITE_CONFIG,
    shell:
        "pythia-repro fetch --config {params.config} --model {wildcards.model} --step {wildcards.step}"
        " --output {output} > {log} 2>&1"
