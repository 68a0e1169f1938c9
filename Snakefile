# pythia-repro: a Pythia-style model suite as one Snakemake DAG.
# Thin on purpose: config + validation, the stage rule files, and the target list.
from pythia_repro.config import load_suite


# The embedded default applies only when no --configfile is given: loaded unconditionally, Snakemake
# would merge it under the user's config and its keys (a synthetic corpus, a BPE size) would leak in.
if not config:

    configfile: "config/config.yaml"


SUITE = load_suite(dict(config))  # schema validation; a bad key stops the DAG build here


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/evaluate.smk"


rule all:
    input:
        all_targets(),
    default_target: True
