# pythia-repro: a Pythia-style model suite as one Snakemake DAG.
# Thin on purpose: config + validation, the stage rule files, and the target list.
from snakemake.utils import min_version

from pythia_repro.config import load_suite
from pythia_repro.workflow import config_source

min_version("8.0")


# The embedded default applies only when no --configfile is given: loaded unconditionally, Snakemake
# would merge it under the user's config and its keys (a synthetic corpus, a BPE size) would leak in.
if not config:

    configfile: "config/config.yaml"


report: "report/workflow.rst"


# Schema and consistency validation: a bad key stops the DAG build here, naming it and the file.
SUITE = load_suite(dict(config), source=config_source(workflow.configfiles))


include: "workflow/rules/common.smk"


wildcard_constraints:
    shard=r"\d+",
    variant="standard|deduped",
    seed=r"\d+",
    model=MODEL_NAMES,
    step=r"\d+",
    end=r"\d+",
    data=r"(standard|deduped)(-seed\d+)?",
    a=r"\d+",
    b=r"\d+",
    slice=r"\d+",
    slices=r"\d+",


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/figures.smk"


rule all:
    default_target: True
    input:
        all_targets(),
