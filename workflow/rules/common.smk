# Shared by the stage files (data, train, export, evaluate), which only declare rules: the suite's
# layout (every path), the resolved config every job reads, the target lists and every input
# function. Paths come from pythia_repro.layout, job resources from pythia_repro.resources.
import os
import re

from pythia_repro import resources
from pythia_repro.evaluate.suite_tasks import HELDOUT_TASK, heldout_sources
from pythia_repro.workflow import publish_resolved_config

LAYOUT = SUITE.layout
# Every CLI call reads this resolved copy (defaults filled); it is rewritten only when the
# config changes, so it is a parameter of the jobs rather than an input that would retrain all.
# It is written when jobs are about to run, never by a dry run (which leaves results/ untouched).
SUITE_CONFIG = str(LAYOUT.resolved_config)


onstart:
    publish_resolved_config(SUITE)


MODEL_NAMES = "|".join(re.escape(m.name) for m in SUITE.models)
# A published model's checkpoints are fetched, a trained one's exported: the two rules that
# write checkpoint directories split the models between them.
TRAINED_NAMES = "|".join(re.escape(m.name) for m in SUITE.trained_models) or "(?!)"
PUBLISHED_NAMES = "|".join(re.escape(m.name) for m in SUITE.published_models) or "(?!)"
RANKS = SUITE.training.ranks
THREADS_PER_RANK = resources.train_threads_per_rank(SUITE)


def path(p):
    """A layout path as the string Snakemake wants (wildcards stay as {name})."""
    return str(p)


def prefix_of(output):
    """PREFIX of a token file's PREFIX.bin output."""
    return output[0][: -len(".bin")]


# ----- data -------------------------------------------------------------------------------------
def corpus_shards():
    """Train shards in order: the user's Pile files, or the synthetic mini-Pile's."""
    if SUITE.corpus.source == "files":
        return list(SUITE.corpus.files)
    return [path(LAYOUT.synthetic_shard(i)) for i in range(SUITE.corpus.synthetic.num_shards)]


CORPUS_SHARDS = corpus_shards()
SHARD_IDS = [f"{i:02d}" for i in range(len(CORPUS_SHARDS))]


def corpus_shard(wildcards):
    return CORPUS_SHARDS[int(wildcards.shard)]


def variant_shard(wildcards):
    if wildcards.variant == "standard":
        return corpus_shard(wildcards)
    return path(LAYOUT.deduped_shard(wildcards.shard))


def variant_shard_tokens(wildcards):
    return [path(LAYOUT.shard_tokens(wildcards.variant, s)) + ".bin" for s in SHARD_IDS]


def given_tokenizer():
    """tokenizer.source file: the user's tokenizer.json, so replacing it retokenizes."""
    return [SUITE.tokenizer.path] if SUITE.tokenizer.source == "file" else []


def token_files(variant):
    return [path(p) for p in LAYOUT.token_files(LAYOUT.data_prefix(variant))]


def data_targets():
    """The data stage of the models this suite trains (a published suite has none)."""
    trained = SUITE.trained_models
    orders = sorted({(m.data, m.seed) for m in trained})
    targets = [path(p) for v, s in orders for p in SUITE.index_maps(v, s)]
    if any(m.data == "deduped" for m in trained):
        targets.append(path(LAYOUT.dedup_report))
    return targets


# ----- training ---------------------------------------------------------------------------------
def model_data(wildcards):
    """The token files and index maps a model trains on (and the case studies read); for a
    published model, the configured files of the order it saw."""
    spec = SUITE.model(wildcards.model)
    return [path(p) for p in SUITE.order_files(spec.data, spec.seed)]


def checkpoint_written(model, step):
    """The marker of the training segment whose job writes checkpoint `step` of `model`."""
    return path(LAYOUT.segment_marker(model, SUITE.segment_for_step(model, int(step))))


def previous_segment(wildcards):
    """The segment this one resumes from: the model's previous one, or the base model's segment
    holding the branch checkpoint (interventions), or nothing for a model's first segment."""
    spec = SUITE.model(wildcards.model)
    ends = SUITE.segment_ends(spec.name)
    i = ends.index(int(wildcards.end))
    if i > 0:
        return [path(LAYOUT.segment_marker(spec.name, ends[i - 1]))]
    if spec.is_intervention:
        return [checkpoint_written(spec.base, spec.branch_step)]
    return []


def final_segments():
    return [path(LAYOUT.segment_marker(m.name, SUITE.train_iters)) for m in SUITE.trained_models]


def train_targets():
    return final_segments() + [path(LAYOUT.loss_figure)] if SUITE.trained_models else []


# ----- export, upload, evaluation ------------------------------------------------------------------
def segment_of_checkpoint(wildcards):
    return checkpoint_written(wildcards.model, wildcards.step)


def export_targets():
    """Exports and uploads of what this suite trains (a published suite's revisions are fetched
    on demand by the jobs that read them)."""
    steps = [(m.name, s) for m in SUITE.trained_models for s in SUITE.export_steps(m.name)]
    targets = [path(LAYOUT.export_dir(m, s)) for m, s in steps]
    if SUITE.upload.target != "none":
        targets += [path(LAYOUT.upload_receipt(m, s)) for m, s in steps]
    return targets


def fetched_checkpoint(p):
    """A fetched revision's directory: temporary when fetch.cleanup deletes weights after use."""
    return temp(directory(p)) if SUITE.fetch.cleanup else directory(p)


def benchmarks_input():
    """The offline benchmark tasks, when the suite evaluates real benchmarks."""
    return [path(LAYOUT.benchmarks_dir)] if SUITE.evaluate.benchmarks else []


def benchmarks_flag(wildcards, input):
    return f"--benchmarks-dir {input.benchmarks}" if input.benchmarks else ""


def heldout_inputs():
    return [path(p) for p in heldout_sources(SUITE)] if HELDOUT_TASK in SUITE.evaluate.tasks else []


EVAL_FIGURES = [
    (task, shots, path(LAYOUT.eval_figure(task, shots)))
    for task in SUITE.evaluate.tasks
    for shots in SUITE.evaluate.num_fewshot
]


def eval_records():
    """The evaluation records of the tidy table: the suite's tasks, and the case studies' own."""
    suite_records = [path(LAYOUT.eval_record(m.name, s)) for m in SUITE.models for s in SUITE.eval_steps(m.name)]
    return suite_records + arithmetic_records()


def evaluate_targets():
    return [path(LAYOUT.eval_table("csv")), path(LAYOUT.eval_table("parquet"))] + [f for _, _, f in EVAL_FIGURES]


# ----- analysis (the case studies) ----------------------------------------------------------------
TERM_PARTS = SUITE.term_frequency.parts()


def term_count_parts(wildcards):
    return [path(LAYOUT.term_counts_part(wildcards.data, a, b)) for a, b in TERM_PARTS]


def order_of_data(wildcards):
    """The files of a term-frequency data order (`standard`, `deduped-seed2`, ...)."""
    variant, seed = SUITE.term_count_orders[wildcards.data]
    return [path(p) for p in SUITE.order_files(variant, seed)]


def arithmetic_records():
    return [
        path(LAYOUT.arithmetic_record(m.name, s))
        for m in SUITE.term_frequency_models
        for s in SUITE.term_frequency_steps(m.name)
    ]


def arithmetic_samples():
    return [
        path(LAYOUT.arithmetic_samples(m.name, s))
        for m in SUITE.term_frequency_models
        for s in SUITE.term_frequency_steps(m.name)
    ]


TERM_FREQUENCY_FIGURES = [
    LAYOUT.term_frequency_report_dir / f"{kind}_{op}_{k}shot.png"
    for op in SUITE.term_frequency.ops
    for k in SUITE.term_frequency.shots
    for kind in ("accuracy_vs_frequency", "delta")
]


def triviaqa_count_parts(wildcards):
    return [path(LAYOUT.triviaqa_counts_part(wildcards.data, a, b)) for a, b in TERM_PARTS]


def triviaqa_counts():
    return [path(LAYOUT.triviaqa_counts(d)) for d in SUITE.term_count_orders]


def term_frequency_targets():
    if not SUITE.term_frequency.steps:
        return []
    targets = [path(LAYOUT.term_counts(d)) for d in SUITE.term_count_orders] + [
        path(LAYOUT.term_frequency_report_dir / "summary.json")
    ]
    if SUITE.triviaqa_models:
        targets += triviaqa_counts() + [path(LAYOUT.triviaqa_report_dir / "summary.json")]
    return targets


MEMORIZATION_SLICES = SUITE.memorization.slices


def memorization_slices(wildcards):
    return [
        path(LAYOUT.memorization_slice(wildcards.model, wildcards.step, i, MEMORIZATION_SLICES))
        for i in range(MEMORIZATION_SLICES)
    ]


def memorization_scores():
    return [path(LAYOUT.memorization_scores(m.name, s)) for m in SUITE.models for s in SUITE.memorization_steps(m.name)]


MEMORIZATION_REPORT = [
    path(LAYOUT.memorization_report_dir / name)
    for name in ("summary.json", "memorization.csv", "qq.png", "rate_vs_position.png")
]


def memorization_targets():
    return memorization_scores() + MEMORIZATION_REPORT if SUITE.memorization.steps else []


def bias_records():
    return [path(LAYOUT.bias_record(m.name, s)) for m in SUITE.models for s in SUITE.gender_bias_steps(m.name)]


def bias_targets():
    return [path(LAYOUT.bias_report_dir / "summary.json")] if bias_records() else []


def analysis_targets():
    return term_frequency_targets() + memorization_targets() + bias_targets()


def all_targets():
    return (
        data_targets()
        + train_targets()
        + export_targets()
        + evaluate_targets()
        + analysis_targets()
        + figures_targets()
    )


# ----- figures (the paper's figures and the report) -----------------------------------------------
from pythia_repro.figures import paper as paper_figures
from pythia_repro.figures.stage import section_inputs, section_outputs

FIGURE_SECTIONS = paper_figures.paper_figures(SUITE)


def figure_caption(name):
    """The report caption (report/*.rst at the top level) of one figure or table of the paper."""
    for prefix in ("evaluation_", "term_frequency_accuracy_"):
        if name.startswith(prefix):
            name = prefix.rstrip("_")
            break
    return f"../../report/{name}.rst"


def figures_outputs(section):
    """A section's figures (the PNGs marked for the report, the PDFs beside them) and tables."""
    category = paper_figures.SECTIONS[section]
    out = []
    for p in section_outputs(SUITE, section):
        name = p.stem
        if p.suffix in (".png", ".html") or p == LAYOUT.paper_figure("loss", "pdf"):
            sub = "Tables" if p.suffix == ".html" else name
            labels = {"name": name}
            out.append(report(path(p), caption=figure_caption(name), category=category, subcategory=sub, labels=labels))
        else:
            out.append(path(p))
    return out


def figures_inputs(section):
    return [path(p) for files in section_inputs(SUITE, section).values() for p in files if section != "loss"]


def figures_targets():
    return [path(p) for section in FIGURE_SECTIONS for p in section_outputs(SUITE, section)]
