"""Near-dedup (MinHash + LSH): planted duplicates, corpus order, shard invariance, brute force."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import yaml
import zstandard

from pythia_repro.cli import main
from pythia_repro.data.dedup import (
    DedupError,
    DedupParams,
    MinHasher,
    ShardSignatures,
    candidate_probability,
    find_clusters,
    jaccard,
    lsh_params,
    word_shingles,
)
from pythia_repro.data.dedup.clusters import _UnionFind

THRESHOLD = 0.87
K = 5


# ----- helpers ------------------------------------------------------------------------------------



def read_shard(path: Path) -> list[str]:
    data = path.read_bytes()
    if path.suffix == ".zst":
        data = zstandard.ZstdDecompressor().stream_reader(data).read()
    return data.decode().splitlines(keepends=True)


@pytest.fixture
def config(tmp_path: Path, repo_root: Path):
    def make(on_malformed: str = "error", **dedup) -> Path:
        cfg = yaml.safe_load((repo_root / "config" / "config.yaml").read_text())
        cfg["corpus"]["on_malformed"] = on_malformed
        cfg["dedup"] = {"threshold": THRESHOLD, "num_perm": 128, "shingle_words": K, **dedup}
        path = tmp_path / f"suite-{on_malformed}-{len(list(tmp_path.glob('suite-*')))}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    return make


@pytest.fixture
def run_dedup(write_shard):
    """run_dedup(cfg, shards, work, suffix=".jsonl.zst"): the three verbs as the workflow runs them;
    returns the report and each shard's kept lines."""

    def run(cfg: Path, shards: list[list[str]], work: Path, suffix: str = ".jsonl.zst") -> tuple[dict, list]:
        inputs = [write_shard(work / f"in/{i:02d}{suffix}", texts) for i, texts in enumerate(shards)]
        sigs = []
        for i, path in enumerate(inputs):
            sig = work / f"minhash/{i:02d}.npz"
            assert main(["dedup-signatures", "--config", str(cfg), "--input", str(path), "--shard-index", f"{i:02d}",
                         "--output", str(sig)]) == 0
            sigs.append(str(sig))
        keep, report = work / "keep.npz", work / "report.json"
        assert main(["dedup-clusters", "--config", str(cfg), "--signatures", *sigs, "--keep", str(keep),
                     "--report", str(report)]) == 0
        outputs = []
        for i, path in enumerate(inputs):
            out = work / f"out/{i:02d}{suffix}"
            assert main(["dedup-apply", "--config", str(cfg), "--input", str(path), "--keep", str(keep),
                         "--shard-index", f"{i:02d}", "--output", str(out)]) == 0
            outputs.append(read_shard(out))
        return json.loads(report.read_text()), outputs

    return run


def kept_texts(outputs: list[list[str]]) -> list[str]:
    return [json.loads(line)["text"] for lines in outputs for line in lines]


def random_doc(rng: random.Random, vocab: list[str], lo: int = 80, hi: int = 300) -> str:
    return " ".join(rng.choices(vocab, k=rng.randint(lo, hi)))


def edit(rng: random.Random, text: str, n: int) -> str:
    words = text.split()
    for _ in range(n):
        words[rng.randrange(len(words))] = f"edit{rng.randrange(10**9)}"
    return " ".join(words)


def brute_force(texts: list[str], threshold: float = THRESHOLD) -> tuple[list[bool], dict]:
    """Exact Jaccard over all pairs, connected components, first of each kept."""
    sh = [word_shingles(t, K) for t in texts]
    parent = list(range(len(texts)))

    def find(x: int) -> int:
        while parent[x] != x:
            x = parent[x]
        return x

    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            if jaccard(sh[i], sh[j]) >= threshold:
                ri, rj = find(i), find(j)
                parent[max(ri, rj)] = min(ri, rj)
    roots = [find(i) for i in range(len(texts))]
    keep = [roots[i] == i for i in range(len(texts))]
    sizes = np.bincount(roots)
    nbytes = np.array([len(t.encode()) for t in texts])
    return keep, {
        "documents_in": len(texts),
        "documents_out": int(sum(keep)),
        "duplicates_removed": len(texts) - int(sum(keep)),
        "duplicate_clusters": int((sizes >= 2).sum()),
        "largest_cluster": int(sizes.max()),
        "bytes_removed": int(nbytes[~np.array(keep)].sum()),
        "documents_in_duplicate_clusters": int(sizes[sizes >= 2].sum()),
    }


def separated_corpus(seed: int = 0, n_base: int = 60) -> list[str]:
    """Documents whose pairwise exact Jaccard is either >= 0.93 or <= 0.6: no pair sits near the
    threshold, where a MinHash estimate (std ~0.03 at 128 permutations) could go either way."""
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(3000)]
    texts: list[str] = []
    while len(texts) < n_base * 2:
        r = rng.random()
        with_words = [t for t in texts if t.strip()]
        if with_words and r < 0.15:
            texts.append(rng.choice(texts))  # exact copy
        elif with_words and r < 0.35:
            texts.append(edit(rng, rng.choice(with_words), 1))  # near copy, 1 edit in >= 120 words
        elif with_words and r < 0.45:
            texts.append(edit(rng, rng.choice(with_words), 25))  # heavily edited, J well below 0.87
        elif r < 0.5:
            texts.append(rng.choice(["", "   ", "\n\t"]))  # never duplicates, however often repeated
        else:
            texts.append(random_doc(rng, vocab, 120, 300))
    sh = [word_shingles(t, K) for t in texts]
    keep = []
    for i, s in enumerate(sh):  # drop documents that would make an ambiguous pair
        if all(not (0.6 < jaccard(s, sh[j]) < 0.93) for j in keep):
            keep.append(i)
    return [texts[i] for i in keep]


# ----- hashing ------------------------------------------------------------------------------------


def test_lsh_params_reach_the_threshold():
    assert lsh_params(0.87, 128) == (14, 9)
    p = DedupParams()
    assert (p.bands, p.rows) == (14, 9) and p.min_matches == 112
    assert candidate_probability(0.87, 14, 9) >= 0.99
    assert candidate_probability(0.5, 14, 9) < 0.03


def test_words_are_str_split_words():
    """Byte-level tokenization (all Unicode whitespace) equals str.split(), across batch splits."""
    ws = [c for c in map(chr, range(0x110000)) if c.isspace()]
    alphabet = list("ab") + ["é", "€", "日本", "😀", "\x00", "x" * 9, "y" * 20, "\ud800"] + ws
    rng = random.Random(1)
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80))) for _ in range(2000)]
    hasher = MinHasher(DedupParams())
    a = hasher.batch(texts)
    b = hasher.batch([" ".join(t.split()) for t in texts])
    assert (a.signatures == b.signatures).all()
    expected = [max(len(t.split()) - K + 1, min(len(t.split()), 1)) for t in texts]
    assert a.n_shingles.tolist() == expected
    pieces = np.concatenate([hasher.batch(texts[i : i + 7]).signatures for i in range(0, len(texts), 7)])
    assert (pieces == a.signatures).all()
    # distinct words do not collide: 'x'*9 vs 'x'*9 + NUL, long words differing in the last chunk
    s = hasher.batch(["a b c d e", "a b c d e\x00", "x" * 17, "x" * 16 + "y"]).signatures
    assert (s[0] != s[1]).any() and (s[2] != s[3]).any()


def test_estimates_are_unbiased_with_minhash_variance():
    rng = random.Random(2)
    vocab = [f"w{i}" for i in range(50000)]
    pairs = []
    for _ in range(400):
        base = random_doc(rng, vocab, 100, 300)
        pairs.append((base, edit(rng, base, rng.randint(1, 8))))
    true = np.array([jaccard(word_shingles(a, K), word_shingles(b, K)) for a, b in pairs])
    sig = MinHasher(DedupParams()).batch([t for p in pairs for t in p]).signatures
    est = (sig[0::2] == sig[1::2]).mean(axis=1)
    z = (est - true) / np.sqrt(true * (1 - true) / 128)
    assert abs((est - true).mean()) < 0.006
    assert 0.85 < z.std() < 1.15


def test_union_find_roots_are_first_members():
    rng = np.random.default_rng(0)
    n = 500
    u, v = rng.integers(0, n, 400), rng.integers(0, n, 400)
    uf = _UnionFind(n)
    uf.union(u[:200], v[:200])
    uf.union(u[200:], v[200:])
    roots = uf.roots()
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            x = parent[x]
        return x

    for a, b in zip(u, v, strict=True):
        ra, rb = find(a), find(b)
        parent[max(ra, rb)] = min(ra, rb)
    assert roots.tolist() == [find(i) for i in range(n)]


# ----- the verbs ----------------------------------------------------------------------------------


def test_planted_duplicates_removed_first_in_corpus_order_kept(config, tmp_path, run_dedup):
    rng = random.Random(3)
    vocab = [f"v{i}" for i in range(5000)]
    a, b, c, d = (random_doc(rng, vocab, 150, 250) for _ in range(4))
    distinct = [random_doc(rng, vocab) for _ in range(30)]
    shards = [
        distinct[:10] + [a, b],
        distinct[10:20] + [edit(rng, a, 1), c, a, edit(rng, b, 1)],  # near, exact copies of shard 0's
        distinct[20:] + [edit(rng, c, 1), c, d, d.upper(), "", "  "],
    ]
    report, outputs = run_dedup(config(), shards, tmp_path)
    kept = kept_texts(outputs)
    assert kept == distinct[:10] + [a, b] + distinct[10:20] + [c] + distinct[20:] + [d, d.upper(), "", "  "]
    assert [len(o) for o in outputs] == [12, 11, 14]
    assert report["documents_in"] == 42 and report["duplicates_removed"] == 5
    assert report["documents_without_words"] == 2
    assert report["per_shard"][1]["duplicates_removed"] == 3
    # output lines are the input lines, byte for byte (meta included)
    original = read_shard(tmp_path / "in/00.jsonl.zst")
    assert outputs[0] == original
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left behind


def test_one_shard_or_three_same_result(config, tmp_path, run_dedup):
    texts = separated_corpus(seed=4)
    cfg = config()
    one_report, one = run_dedup(cfg, [texts], tmp_path / "one")
    cut = [0, len(texts) // 3, 2 * len(texts) // 3, len(texts)]
    three_report, three = run_dedup(cfg, [texts[cut[i] : cut[i + 1]] for i in range(3)], tmp_path / "three",
                                    suffix=".jsonl")
    assert kept_texts(one) == kept_texts(three)
    for key in ("documents_out", "duplicates_removed", "duplicate_clusters", "bytes_removed", "largest_cluster"):
        assert one_report[key] == three_report[key]


def test_report_matches_brute_force_exact_jaccard(config, tmp_path, run_dedup):
    texts = separated_corpus(seed=5)
    keep, expected = brute_force(texts)
    assert expected["duplicates_removed"] >= 15  # the corpus does plant duplicates
    cut = [0, len(texts) // 2, len(texts)]
    report, outputs = run_dedup(config(), [texts[: cut[1]], texts[cut[1] :]], tmp_path)
    assert kept_texts(outputs) == [t for t, k in zip(texts, keep, strict=True) if k]
    for key, value in expected.items():
        assert report[key] == value, key
    assert report["bytes_in"] == sum(len(t.encode()) for t in texts)
    assert report["parameters"]["threshold"] == THRESHOLD and report["parameters"]["bands"] == 14


def test_partitioned_bands_and_small_window_agree(tmp_path):
    texts = separated_corpus(seed=6)
    params = DedupParams()
    hasher = MinHasher(params)
    shards = [ShardSignatures.from_batch(i, hasher.batch(texts[i::2]), params) for i in range(2)]
    base = find_clusters(shards, params)
    split = find_clusters(shards, params, max_memory_bytes=1000)  # many hash-range partitions
    assert split.stats["partitions_per_band"] > 1
    assert (base.keep == split.keep).all()
    # a bucket far larger than the window: 40 one-word variants of one document
    rng = random.Random(7)
    doc = random_doc(rng, [f"w{i}" for i in range(3000)], 300, 300)
    variants = [edit(rng, doc, 1) for _ in range(40)]
    sh = [ShardSignatures.from_batch(0, hasher.batch(variants), params)]
    res = find_clusters(sh, params, window=2)
    assert res.stats["oversized_buckets"] > 0
    assert res.keep.sum() == 1 and res.keep[0]


def test_documents_without_words_are_never_duplicates(config, tmp_path, run_dedup):
    rng = random.Random(8)
    vocab = [f"w{i}" for i in range(3000)]
    docs = [random_doc(rng, vocab) for _ in range(2)]
    shards = [["", docs[0], " \n ", ""], [docs[1], "\t", docs[0], "", "a"]]
    report, outputs = run_dedup(config(), shards, tmp_path)
    assert kept_texts(outputs) == ["", docs[0], " \n ", "", docs[1], "\t", "", "a"]
    assert report["documents_without_words"] == 5 and report["duplicates_removed"] == 1
    assert report["duplicate_clusters"] == 1


# ----- errors -------------------------------------------------------------------------------------


def test_malformed_shard_is_a_clear_error(config, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine document here"}\n{"text": oops}\n')
    code = main(["dedup-signatures", "--config", str(config()), "--input", str(bad), "--shard-index", "0",
                 "--output", str(tmp_path / "sig.npz")])
    assert code == 2
    assert f"{bad}:2: malformed JSON" in capsys.readouterr().err
    assert not (tmp_path / "sig.npz").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".sig.npz")]  # spool cleaned up
    # with on_malformed: skip the line is skipped and counted
    assert main(["dedup-signatures", "--config", str(config("skip")), "--input", str(bad), "--shard-index", "0",
                 "--output", str(tmp_path / "sig.npz")]) == 0
    meta = ShardSignatures.load(tmp_path / "sig.npz").meta
    assert meta["documents"] == 1 and meta["read_stats"]["malformed_skipped"] == 1


def test_bad_signature_and_keep_files(config, tmp_path, capsys, write_shard, run_dedup):
    cfg = config()
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file")
    code = main(["dedup-clusters", "--config", str(cfg), "--signatures", str(garbage), "--keep",
                 str(tmp_path / "k.npz"), "--report", str(tmp_path / "r.json")])
    assert code == 2 and "garbage.npz: not a readable .npz file" in capsys.readouterr().err
    np.savez(tmp_path / "other.npz", x=np.arange(3))
    with pytest.raises(DedupError, match="not a dedup signature file"):
        ShardSignatures.load(tmp_path / "other.npz")

    texts = ["one two three four five six", "seven eight nine ten eleven twelve"]
    run_dedup(cfg, [texts], tmp_path / "run")
    sig = str(tmp_path / "run/minhash/00.npz")
    # signatures computed under other parameters are refused
    code = main(["dedup-clusters", "--config", str(config(threshold=0.8)), "--signatures", sig, "--keep",
                 str(tmp_path / "k.npz"), "--report", str(tmp_path / "r.json")])
    assert code == 2 and "recompute the signatures" in capsys.readouterr().err
    # the same shard twice
    code = main(["dedup-clusters", "--config", str(cfg), "--signatures", sig, sig, "--keep",
                 str(tmp_path / "k.npz"), "--report", str(tmp_path / "r.json")])
    assert code == 2 and "more than one signature file" in capsys.readouterr().err
    # apply: unknown shard, and a shard that changed since its signatures
    keep = str(tmp_path / "run/keep.npz")
    shard = write_shard(tmp_path / "changed.jsonl", ["one two three four five six!", texts[1]])
    code = main(["dedup-apply", "--config", str(cfg), "--input", str(shard), "--keep", keep,
                 "--shard-index", "3", "--output", str(tmp_path / "o.jsonl")])
    assert code == 2 and "no shard 3" in capsys.readouterr().err
    code = main(["dedup-apply", "--config", str(cfg), "--input", str(shard), "--keep", keep,
                 "--shard-index", "0", "--output", str(tmp_path / "o.jsonl")])
    assert code == 2 and "the shard changed" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()
