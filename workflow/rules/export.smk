# Export and upload stage: each checkpoint to evaluate or publish becomes a transformers directory
# ({ROOT}/export/{model}/step{N}), then is published to its revision (branch step{N}; main = the
# final step) with a receipt ({ROOT}/upload/{model}/step{N}.json). Input of an export is the marker
# of the training segment that wrote the checkpoint, so exports start as soon as that segment ends.

import re

EXPORT = f"{ROOT}/export"
UPLOAD = f"{ROOT}/upload"
UPLOAD_TARGET = SUITE.config["upload"]["target"]
MODEL_NAMES = "|".join(re.escape(m.name) for m in SUITE.models)
_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
EXPORT_BYTES = _BYTES[SUITE.config["export"]["dtype"]]


def export_steps(model):
    """The evaluated checkpoints plus the final one (every checkpoint when evaluate.steps is 'all')."""
    return sorted(set(SUITE.eval_steps(model)) | {max(SUITE.model_checkpoint_steps(model))})


def export_dir(model, step):
    return f"{EXPORT}/{model}/step{step}"


def segment_done(wildcards):
    """The marker of the training segment whose job wrote checkpoint `step`."""
    end = SUITE.segment_for_step(wildcards.model, int(wildcards.step))
    return f"{ROOT}/models/{wildcards.model}/segments/end{end}.json"


def export_mem_mb(wildcards):
    """fp32 weights merged from the ZeRO shards (4 B/param) + the exported copy + one optimizer
    shard that zero_to_fp32 holds while reading it (12 B/param / ranks) + the runtime."""
    per_param = 4 + EXPORT_BYTES + 12 / SUITE.training["ranks"]
    return int(3000 + per_param * SUITE.approx_parameters(wildcards.model) / 2**20)


def export_targets():
    targets = [export_dir(m.name, s) for m in SUITE.models for s in export_steps(m.name)]
    if UPLOAD_TARGET != "none":
        targets += [f"{UPLOAD}/{m.name}/step{s}.json" for m in SUITE.models for s in export_steps(m.name)]
    return targets


rule export:
    input:
        segment_done,
    output:
        directory(f"{EXPORT}/{{model}}/step{{step}}"),
    wildcard_constraints:
        model=MODEL_NAMES,
        step=r"\d+",
    log:
        f"{ROOT}/logs/export/{{model}}/step{{step}}.log",
    resources:
        mem_mb=export_mem_mb,
        runtime=60,
    shell:
        "{CLI} export --config {SUITE_CONFIG} --model {wildcards.model} --step {wildcards.step}"
        " --output {output} > {log} 2>&1"


# HF_TOKEN (target hub) must be in the environment Snakemake runs in; jobs inherit it and the
# token never appears on a command line or in a log.
rule upload:
    input:
        f"{EXPORT}/{{model}}/step{{step}}",
    output:
        f"{UPLOAD}/{{model}}/step{{step}}.json",
    wildcard_constraints:
        model=MODEL_NAMES,
        step=r"\d+",
    log:
        f"{ROOT}/logs/upload/{{model}}/step{{step}}.log",
    resources:
        mem_mb=2000,
        runtime=120,
    shell:
        "{CLI} upload --config {SUITE_CONFIG} --model {wildcards.model} --step {wildcards.step}"
        " --input {input} --receipt {output} > {log} 2>&1"
