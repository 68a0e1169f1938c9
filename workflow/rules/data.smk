# Data stage: corpus -> tokenizer -> (near-dedup) -> token files -> GPT-NeoX data order.
# Outputs under {ROOT}/data/; one job per corpus shard where the work is per shard.


DATA = f"{ROOT}/data"


def corpus_shards():
    """Train shards in order: the user's Pile files, or the synthetic mini-Pile's."""
    corpus = SUITE.config["corpus"]
    if corpus["source"] == "files":
        return list(corpus["files"])
    return [f"{DATA}/corpus/train_{i:02d}.jsonl.zst" for i in range(corpus["synthetic"]["num_shards"])]


CORPUS_SHARDS = corpus_shards()
SHARD_IDS = [f"{i:02d}" for i in range(len(CORPUS_SHARDS))]
ON_MALFORMED = SUITE.config["corpus"]["on_malformed"]  # the verbs given --config read it themselves


def variant_shard(wildcards):
    if wildcards.variant == "standard":
        return CORPUS_SHARDS[int(wildcards.shard)]
    return f"{DATA}/deduped/corpus/{wildcards.shard}.jsonl.zst"


def order_files(variant, seed):
    prefix = f"{DATA}/{variant}/{DATA_PREFIX_NAME}"
    stem = f"{prefix}_train_0_indexmap_{SUITE.num_samples}ns_{SUITE.seq_length}sl_{seed}s"
    return [f"{stem}_{kind}_idx.npy" for kind in ("doc", "sample", "shuffle")]


def data_targets():
    seeds = sorted({m.seed for m in SUITE.models})
    targets = [f for v in SUITE.variants for s in seeds for f in order_files(v, s)]
    if "deduped" in SUITE.variants:
        targets.append(f"{DATA}/deduped/dedup_report.json")
    return targets


wildcard_constraints:
    shard=r"\d+",
    variant="standard|deduped",
    seed=r"\d+",


rule synth_corpus:
    output:
        shards=[f"{DATA}/corpus/train_{i}.jsonl.zst" for i in SHARD_IDS],
        heldout=f"{DATA}/corpus/heldout.jsonl",
        manifest=f"{DATA}/corpus/manifest.json",
    log:
        f"{ROOT}/logs/data/synth_corpus.log",
    shell:
        "{CLI} synth-corpus --config {SUITE_CONFIG} --out-dir {DATA}/corpus 2> {log}"


def given_tokenizer():
    """tokenizer.source file: the user's tokenizer.json, so replacing it retokenizes."""
    tok = SUITE.config["tokenizer"]
    return [tok["path"]] if tok["source"] == "file" else []


rule tokenizer:
    input:
        corpus=CORPUS_SHARDS,
        given=given_tokenizer(),
    output:
        f"{DATA}/tokenizer/tokenizer.json",
    log:
        f"{ROOT}/logs/data/tokenizer.log",
    shell:
        "{CLI} tokenizer --config {SUITE_CONFIG} --input {input.corpus} --output {output} 2> {log}"


rule dedup_signatures:
    input:
        lambda wc: CORPUS_SHARDS[int(wc.shard)],
    output:
        f"{DATA}/deduped/minhash/{{shard}}.npz",
    log:
        f"{ROOT}/logs/data/dedup_signatures_{{shard}}.log",
    shell:
        "{CLI} dedup-signatures --config {SUITE_CONFIG} --input {input} --shard-index {wildcards.shard}"
        " --output {output} 2> {log}"


rule dedup_clusters:
    input:
        expand(f"{DATA}/deduped/minhash/{{shard}}.npz", shard=SHARD_IDS),
    output:
        keep=f"{DATA}/deduped/dedup_keep.npz",
        report=f"{DATA}/deduped/dedup_report.json",
    log:
        f"{ROOT}/logs/data/dedup_clusters.log",
    shell:
        "{CLI} dedup-clusters --config {SUITE_CONFIG} --signatures {input}"
        " --keep {output.keep} --report {output.report} 2> {log}"


rule dedup_apply:
    input:
        shard=lambda wc: CORPUS_SHARDS[int(wc.shard)],
        keep=f"{DATA}/deduped/dedup_keep.npz",
    output:
        f"{DATA}/deduped/corpus/{{shard}}.jsonl.zst",
    log:
        f"{ROOT}/logs/data/dedup_apply_{{shard}}.log",
    shell:
        "{CLI} dedup-apply --config {SUITE_CONFIG} --input {input.shard} --keep {input.keep}"
        " --shard-index {wildcards.shard} --output {output} 2> {log}"


rule tokenize_shard:
    input:
        shard=variant_shard,
        tokenizer=f"{DATA}/tokenizer/tokenizer.json",
    output:
        multiext(f"{DATA}/{{variant}}/tokens/{{shard}}", ".bin", ".idx"),
    log:
        f"{ROOT}/logs/data/tokenize_{{variant}}_{{shard}}.log",
    threads: 2
    shell:
        "{CLI} tokenize --input {input.shard} --tokenizer {input.tokenizer}"
        " --output-prefix {DATA}/{wildcards.variant}/tokens/{wildcards.shard} --workers {threads}"
        " --on-malformed {ON_MALFORMED} 2> {log}"


rule merge_tokens:
    input:
        expand(f"{DATA}/{{{{variant}}}}/tokens/{{shard}}.bin", shard=SHARD_IDS),
    output:
        multiext(f"{DATA}/{{variant}}/{DATA_PREFIX_NAME}", ".bin", ".idx"),
    params:
        prefixes=lambda wc, input: [p[: -len(".bin")] for p in input],
    log:
        f"{ROOT}/logs/data/merge_tokens_{{variant}}.log",
    shell:
        "{CLI} merge-tokens --inputs {params.prefixes}"
        " --output-prefix {DATA}/{wildcards.variant}/{DATA_PREFIX_NAME} 2> {log}"


rule order:
    input:
        multiext(f"{DATA}/{{variant}}/{DATA_PREFIX_NAME}", ".bin", ".idx"),
    output:
        [
            f"{DATA}/{{variant}}/{DATA_PREFIX_NAME}_train_0_indexmap_{SUITE.num_samples}ns_"
            f"{SUITE.seq_length}sl_{{seed}}s_{kind}_idx.npy"
            for kind in ("doc", "sample", "shuffle")
        ],
    log:
        f"{ROOT}/logs/data/order_{{variant}}_{{seed}}.log",
    shell:
        "{CLI} order --data-prefix {DATA}/{wildcards.variant}/{DATA_PREFIX_NAME}"
        " --train-iters {SUITE.train_iters} --global-batch-size {SUITE.global_batch_size}"
        " --seq-length {SUITE.seq_length} --seed {wildcards.seed} 2> {log}"
