# Training stage: one job per segment of each model; the segment marker is the job's output.
# A job resumes from the model's last complete checkpoint, so a killed or timed-out segment is
# simply rerun; checkpoints are side outputs under the model's checkpoints directory.


rule train_segment:
    input:
        data=model_data,
        tokenizer=path(LAYOUT.tokenizer),
        previous=previous_segment,
    output:
        path(LAYOUT.segment_marker("{model}", "{end}")),
    log:
        path(LAYOUT.log("train", "{model}/end{end}")),
    conda:
        "../../envs/train.yaml"
    threads: THREADS_PER_RANK * RANKS
    resources:
        **resources.gpus(SUITE.training.on_gpu, RANKS),
        # Several ranks: `launch` runs srun itself, so the SLURM executor must not wrap the job in
        # a one-task srun (the plugin accepts `mpi` only with more than one task).
        **({"mpi": "srun"} if RANKS > 1 else {}),
        mem_mb=lambda wc: resources.train_mem_mb(SUITE, wc.model),
        tasks=RANKS,
        cpus_per_task=THREADS_PER_RANK,
    params:
        config=SUITE_CONFIG,
        ranks=RANKS,
        # CPUs per rank from the resource, not from `threads`: a SLURM job's Snakemake caps
        # `threads` at the CPUs of the batch step's node, which for multi-node jobs is not per rank.
        threads=lambda wildcards, resources: resources.cpus_per_task,
    shell:
        "pythia-repro launch --config {params.config} --model {wildcards.model} --until-step {wildcards.end}"
        " --ranks {params.ranks} --threads {params.threads} > {log} 2>&1"


rule loss_figure:
    input:
        final_segments(),
    output:
        report(path(LAYOUT.loss_figure), caption="../../report/loss.rst", category="1 Training", subcategory="loss"),
    log:
        path(LAYOUT.log("train", "loss_figure")),
    conda:
        "../../envs/eval.yaml"
    params:
        config=SUITE_CONFIG,
    shell:
        "pythia-repro plot-loss --config {params.config} --output {output} 2> {log}"
