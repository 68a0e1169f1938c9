# Data stage: corpus -> tokenizer -> (near-dedup) -> token files -> GPT-NeoX data order.
# One job per corpus shard where the work is per shard.


rule synth_corpus:
    output:
        shards=[path(LAYOUT.synthetic_shard(i)) for i in SHARD_IDS],
        heldout=path(LAYOUT.heldout_file),
        manifest=path(LAYOUT.corpus_manifest),
    log:
        path(LAYOUT.log("data", "synth_corpus")),
    conda:
        "../../envs/data.yaml"
    params:
        config=SUITE_CONFIG,
        out_dir=lambda wc, output: os.path.dirname(output.manifest),
    shell:
        "pythia-repro synth-corpus --config {params.config} --out-dir {params.out_dir} 2> {log}"


rule tokenizer:
    input:
        corpus=CORPUS_SHARDS,
        given=given_tokenizer(),
    output:
        path(LAYOUT.tokenizer),
    log:
        path(LAYOUT.log("data", "tokenizer")),
    conda:
        "../../envs/data.yaml"
    params:
        config=SUITE_CONFIG,
    shell:
        "pythia-repro tokenizer --config {params.config} --input {input.corpus} --output {output} 2> {log}"


rule dedup_signatures:
    input:
        corpus_shard,
    output:
        path(LAYOUT.dedup_signatures("{shard}")),
    log:
        path(LAYOUT.log("data", "dedup_signatures_{shard}")),
    conda:
        "../../envs/data.yaml"
    params:
        config=SUITE_CONFIG,
    shell:
        "pythia-repro dedup-signatures --config {params.config} --input {input} --shard-index {wildcards.shard}"
        " --output {output} 2> {log}"


rule dedup_clusters:
    input:
        [path(LAYOUT.dedup_signatures(s)) for s in SHARD_IDS],
    output:
        keep=path(LAYOUT.dedup_keep),
        report=path(LAYOUT.dedup_report),
    log:
        path(LAYOUT.log("data", "dedup_clusters")),
    conda:
        "../../envs/data.yaml"
    params:
        config=SUITE_CONFIG,
    shell:
        "pythia-repro dedup-clusters --config {params.config} --signatures {input}"
        " --keep {output.keep} --report {output.report} 2> {log}"


rule dedup_apply:
    input:
        shard=corpus_shard,
        keep=path(LAYOUT.dedup_keep),
    output:
        path(LAYOUT.deduped_shard("{shard}")),
    log:
        path(LAYOUT.log("data", "dedup_apply_{shard}")),
    conda:
        "../../envs/data.yaml"
    params:
        config=SUITE_CONFIG,
    shell:
        "pythia-repro dedup-apply --config {params.config} --input {input.shard} --keep {input.keep}"
        " --shard-index {wildcards.shard} --output {output} 2> {log}"


rule tokenize_shard:
    input:
        shard=variant_shard,
        tokenizer=path(LAYOUT.tokenizer),
    output:
        [path(p) for p in LAYOUT.token_files(LAYOUT.shard_tokens("{variant}", "{shard}"))],
    log:
        path(LAYOUT.log("data", "tokenize_{variant}_{shard}")),
    conda:
        "../../envs/data.yaml"
    threads: 2
    params:
        prefix=lambda wc, output: prefix_of(output),
        on_malformed=SUITE.corpus.on_malformed,
        on_empty_shard=SUITE.corpus.on_empty_shard,
    shell:
        "pythia-repro tokenize --input {input.shard} --tokenizer {input.tokenizer}"
        " --output-prefix {params.prefix} --workers {threads} --on-malformed {params.on_malformed}"
        " --on-empty-shard {params.on_empty_shard} 2> {log}"


rule merge_tokens:
    input:
        variant_shard_tokens,
    output:
        token_files("{variant}"),
    log:
        path(LAYOUT.log("data", "merge_tokens_{variant}")),
    conda:
        "../../envs/data.yaml"
    params:
        inputs=lambda wc, input: [p[: -len(".bin")] for p in input],
        prefix=lambda wc, output: prefix_of(output),
    shell:
        "pythia-repro merge-tokens --inputs {params.inputs} --output-prefix {params.prefix} 2> {log}"


rule order:
    input:
        token_files("{variant}"),
    output:
        [path(p) for p in SUITE.index_maps("{variant}", "{seed}")],
    log:
        path(LAYOUT.log("data", "order_{variant}_{seed}")),
    conda:
        "../../envs/data.yaml"
    params:
        config=SUITE_CONFIG,
        prefix=lambda wc, input: prefix_of(input),
    shell:
        "pythia-repro order --config {params.config} --data-prefix {params.prefix}" " --seed {wildcards.seed} 2> {log}"
