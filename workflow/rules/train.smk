# Training stage: one job per segment of each model; the segment marker is the job's output.
# A job resumes from the model's last complete checkpoint, so a killed or timed-out segment is
# simply rerun; checkpoints are side outputs under {ROOT}/models/{model}/checkpoints/step{N}.

MODELS = f"{ROOT}/models"
TRAINING = SUITE.training
RANKS = TRAINING["ranks"]
ON_GPU = TRAINING["precision"] != "fp32"  # mixed precision means GPU nodes
# CPU threads per rank: one on CPU suites (tiny models, several jobs side by side), more on GPU
# nodes for data loading and the host side of DeepSpeed. A profile overrides it with set-resources:
# train_segment: cpus_per_task.
THREADS_PER_RANK = 8 if ON_GPU else 1


def segment_marker(model, end):
    return f"{MODELS}/{model}/segments/end{end}.json"


def checkpoint_marker(model, step):
    """The marker of the segment that writes checkpoint `step` of `model` (for downstream rules)."""
    return segment_marker(model, SUITE.segment_for_step(model, step))


def previous_segment(wildcards):
    """The segment this one resumes from: the model's previous one, or the base model's segment
    holding the branch checkpoint (interventions), or nothing for a model's first segment."""
    spec = SUITE.model(wildcards.model)
    ends = SUITE.segment_ends(spec.name)
    i = ends.index(int(wildcards.end))
    if i > 0:
        return [segment_marker(spec.name, ends[i - 1])]
    if spec.is_intervention:
        return [checkpoint_marker(spec.base, spec.branch_step)]
    return []


def train_data(wildcards):
    spec = SUITE.model(wildcards.model)
    prefix = f"{DATA}/{spec.data}/{DATA_PREFIX_NAME}"
    return order_files(spec.data, spec.seed) + [f"{prefix}.bin", f"{prefix}.idx"]


def train_mem_mb(wildcards):
    """Host memory per job: fp32 weights, grads and Adam state (~20 bytes/param) per rank, plus
    a fixed allowance for the Python/DeepSpeed/transformers runtime."""
    return RANKS * (1500 + 20 * SUITE.approx_parameters(wildcards.model) // 2**20)


def train_targets():
    finals = [segment_marker(m.name, SUITE.train_iters) for m in SUITE.models]
    return finals + [f"{ROOT}/figures/loss.png"]


wildcard_constraints:
    end=r"\d+",


rule train_segment:
    input:
        data=train_data,
        tokenizer=f"{DATA}/tokenizer/tokenizer.json",
        previous=previous_segment,
    output:
        segment_marker("{model}", "{end}"),
    log:
        f"{ROOT}/logs/train/{{model}}/end{{end}}.log",
    threads: THREADS_PER_RANK * RANKS
    resources:
        mem_mb=train_mem_mb,
        tasks=RANKS,
        cpus_per_task=THREADS_PER_RANK,
        **({"gpu": RANKS} if ON_GPU else {}),
        # Several ranks: `launch` runs srun itself, so the SLURM executor must not wrap the job in
        # a one-task srun (the plugin accepts `mpi` only with more than one task).
        **({"mpi": "srun"} if RANKS > 1 else {}),
    params:
        # CPUs per rank from the resource, not from `threads`: a SLURM job's Snakemake caps
        # `threads` at the CPUs of the batch step's node, which for multi-node jobs is not per rank.
        threads=lambda wildcards, resources: resources.cpus_per_task,
    shell:
        "{CLI} launch --config {SUITE_CONFIG} --model {wildcards.model} --until-step {wildcards.end}"
        " --ranks {RANKS} --threads {params.threads} > {log} 2>&1"


rule loss_figure:
    input:
        [segment_marker(m.name, SUITE.train_iters) for m in SUITE.models],
    output:
        f"{ROOT}/figures/loss.png",
    log:
        f"{ROOT}/logs/train/loss_figure.log",
    shell:
        "{CLI} plot-loss --config {SUITE_CONFIG} --output {output} 2> {log}"
