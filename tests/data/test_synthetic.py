"""The synthetic mini-Pile: determinism, Pile format, and that the manifest's ground truth holds
in the written files (duplicates, Zipf-skewed numbers, gender skew, LAMBADA-style held-out)."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
import zstandard

from pythia_repro.cli import main as cli_main
from pythia_repro.config import load_suite
from pythia_repro.data.corpus import ReadStats, iter_documents, open_text
from pythia_repro.data.dedup import word_shingles
from pythia_repro.data.synthetic import (
    DOMAINS,
    MIN_STEREOTYPE_MARGIN,
    NARRATIVE,
    OCCUPATIONS,
    STORY_ENDINGS,
    SyntheticSpec,
    count_numbers,
    generate,
    write_corpus,
)

FILES = ["train_00.jsonl.zst", "train_01.jsonl.zst", "heldout.jsonl", "manifest.json"]


def _spec(config: Path) -> SyntheticSpec:
    return load_suite(config).corpus.synthetic


@pytest.fixture(scope="module")
def default_spec(repo_root) -> SyntheticSpec:
    """The default config's corpus without its planted repeats (tests/data/test_planted_repeats.py
    covers those): the duplicate pairs, domain shares and planted statistics checked here are the
    corpus's own, which the planted documents would displace."""
    return dataclasses.replace(_spec(repo_root / "config" / "config.yaml"), planted_repeats=0, planted_copies=0)


@pytest.fixture(scope="module")
def corpus(default_spec, tmp_path_factory):
    """The default config's corpus, written and read back: (dir, manifest, train docs, heldout docs)."""
    out = tmp_path_factory.mktemp("mini-pile")
    start = time.process_time()  # CPU time: wall time on a shared CI machine measures its load
    manifest = write_corpus(default_spec, out)
    elapsed = time.process_time() - start
    stats = ReadStats()
    train = list(iter_documents([out / name for name in manifest["train"]["shards"]], stats=stats))
    heldout = list(iter_documents([out / "heldout.jsonl"]))
    return {"dir": out, "manifest": manifest, "train": train, "heldout": heldout, "stats": stats,
            "seconds": elapsed}


def _spearman(xs: list[float], ys: list[float]) -> float:
    def ranks(v):
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        for rank, i in enumerate(order):
            r[i] = rank
        return r

    rx, ry = ranks(xs), ranks(ys)
    n = len(xs)
    mx, my = sum(rx) / n, sum(ry) / n
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    return cov / (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5


# ----- determinism and format ----------------------------------------------------------------------
def test_default_config_is_fast(corpus):
    assert corpus["seconds"] < 5, f"generation took {corpus['seconds']:.1f} CPU seconds"


def test_same_spec_gives_byte_identical_files(corpus, default_spec, tmp_path):
    write_corpus(default_spec, tmp_path)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (corpus["dir"] / name).read_bytes(), name


def test_seed_changes_the_corpus(default_spec):
    small = dataclasses.replace(default_spec, docs_per_shard=200, heldout_docs=20)
    a, b = generate(small), generate(dataclasses.replace(small, seed=small.seed + 1))
    assert [d.text for d in a.shards[0]] != [d.text for d in b.shards[0]]
    assert [d.text for d in generate(small).shards[0]] == [d.text for d in a.shards[0]]


def test_pile_format_and_domains(corpus, default_spec):
    manifest, train = corpus["manifest"], corpus["train"]
    assert corpus["stats"].as_dict()["malformed_skipped"] == 0
    assert len(train) == default_spec.train_docs == manifest["train"]["documents"]
    for name in manifest["train"]["shards"]:
        with open_text(corpus["dir"] / name) as fh:
            for line in fh:
                obj = json.loads(line)
                assert list(obj) == ["text", "meta"] and list(obj["meta"]) == ["pile_set_name"]
    domains = Counter(d.set_name for d in train)
    assert dict(domains) == manifest["train"]["domains"]
    assert set(domains) == set(DOMAINS)
    for name, share in DOMAINS.items():
        assert abs(domains[name] / len(train) - share) < 0.03, name
    assert {"Pile-CC", "PubMed Central", "ArXiv", "Github", "FreeLaw", "StackExchange", "Wikipedia (en)",
            "USPTO Backgrounds"} <= set(domains)


def test_domains_have_their_own_style(corpus):
    by_domain: dict[str, list[str]] = {}
    for d in corpus["train"]:
        by_domain.setdefault(d.set_name, []).append(d.text)
    markers = {
        "Github": "def ", "ArXiv": "$", "DM Mathematics": "What is", "FreeLaw": "defendant",
        "PubMed Central": "patients", "USPTO Backgrounds": "invention", "StackExchange": "Q: How do I",
    }
    for domain, marker in markers.items():
        texts = [t for t in by_domain[domain] if t]
        own = sum(marker in t for t in texts) / len(texts)
        others = sum(marker in d.text for d in corpus["train"] if d.set_name != domain) / len(corpus["train"])
        assert own > 0.3 and others < 0.1, (domain, own, others)


def test_varied_lengths_and_a_few_empty_documents(corpus):
    manifest, train = corpus["manifest"], corpus["train"]
    empty = [i for i, d in enumerate(train) if d.text == ""]
    assert empty == manifest["train"]["empty_documents"] and 1 <= len(empty) <= 10
    assert corpus["stats"].empty == len(empty)
    words = sorted(len(d.text.split()) for d in train if d.text)
    assert words[0] >= 15 and words[-1] >= 300
    assert 50 <= words[len(words) // 2] <= 200
    assert sum(words) == manifest["train"]["words"]


# ----- duplicates --------------------------------------------------------------------------------
def test_planted_duplicate_rates(corpus, default_spec):
    dups = corpus["manifest"]["duplicates"]
    n = default_spec.train_docs
    assert abs(len(dups["exact_pairs"]) / n - default_spec.exact_duplicate_rate) < 0.002
    assert abs(len(dups["near_pairs"]) / n - default_spec.near_duplicate_rate) < 0.002
    assert dups["removable"] == len(dups["exact_pairs"]) + len(dups["near_pairs"])


def test_exact_duplicates_are_exact_and_the_only_ones(corpus):
    texts = [d.text for d in corpus["train"]]
    pairs = corpus["manifest"]["duplicates"]["exact_pairs"]
    for src, copy in pairs:
        assert src != copy and texts[src] == texts[copy] != ""
        assert corpus["train"][src].set_name == corpus["train"][copy].set_name
    repeated = {t: c for t, c in Counter(t for t in texts if t).items() if c > 1}
    assert len(repeated) == len(pairs) and set(repeated.values()) == {2}


def _shingle_jaccard(a: str, b: str, k: int = 5) -> float:
    """Jaccard similarity of two texts' sets of k-word shingles of whitespace words, case kept (the
    deduplicator's definition, written out independently here)."""
    def grams(text):
        words = text.split()
        return {" ".join(words[i:i + k]) for i in range(max(len(words) - k + 1, 1))}
    a, b = grams(a), grams(b)
    return len(a & b) / len(a | b)


def test_near_duplicates_keep_a_high_jaccard(corpus):
    # the texts as written: the shards' JSON lines, decompressed here, not through the corpus reader
    texts = []
    for name in corpus["manifest"]["train"]["shards"]:
        with zstandard.open(corpus["dir"] / name, "rt", encoding="utf-8") as fh:
            texts += [json.loads(line)["text"] for line in fh]
    pairs = corpus["manifest"]["duplicates"]["near_pairs"]
    members = [i for p in pairs for i in p[:2]] + [i for p in corpus["manifest"]["duplicates"]["exact_pairs"]
                                                   for i in p]
    assert len(members) == len(set(members))  # every cluster is one pair
    for src, copy, recorded in pairs:
        j = _shingle_jaccard(texts[src], texts[copy])
        assert src != copy and 0.9 <= j < 1 and j == pytest.approx(recorded, abs=1e-4)
        assert texts[src] != texts[copy] and len(texts[src].split()) == len(texts[copy].split())


def test_minhash_finds_the_planted_pairs_and_nothing_else(corpus):
    """At Pythia's threshold (0.87, 128 permutations) the manifest is the ground truth: no
    accidental near-duplicates among the templated documents, and most planted ones found."""
    datasketch = pytest.importorskip("datasketch")
    dups = corpus["manifest"]["duplicates"]
    planted = {frozenset(p[:2]) for p in dups["exact_pairs"] + dups["near_pairs"]}
    lsh = datasketch.MinHashLSH(threshold=0.87, num_perm=128)
    found = set()
    for i, doc in enumerate(corpus["train"]):
        if not doc.text:
            continue
        mh = datasketch.MinHash(num_perm=128, seed=1)
        mh.update_batch([" ".join(s).encode() for s in word_shingles(doc.text, 5)])
        found.update(frozenset((i, j)) for j in lsh.query(mh))
        lsh.insert(i, mh)
    assert found <= planted
    assert len(found) >= 0.9 * len(planted)


def test_rates_follow_the_config(default_spec):
    spec = dataclasses.replace(default_spec, docs_per_shard=300, exact_duplicate_rate=0.0,
                               near_duplicate_rate=0.2)
    dups = generate(spec).manifest["duplicates"]
    assert (len(dups["exact_pairs"]), len(dups["near_pairs"])) == (0, 120)
    with pytest.raises(ValueError, match="corpus.synthetic: .* lower the duplicate rates"):
        generate(dataclasses.replace(spec, exact_duplicate_rate=0.5))


# ----- numbers -----------------------------------------------------------------------------------
_OPERAND = re.compile(r"(?:What is |^|Calculate )(\d+) (?:plus|times|\+)", re.MULTILINE)


def test_arithmetic_operands_follow_the_recorded_zipf(corpus):
    numbers = corpus["manifest"]["numbers"]
    recount = Counter(int(x) for d in corpus["train"] if d.set_name == "DM Mathematics"
                      for x in _OPERAND.findall(d.text))
    assert {str(n): recount[n] for n in range(100)} == numbers["operand_counts"]
    order = numbers["rank_order"]
    assert sorted(order) == list(range(100)) and order != list(range(100))  # frequency is not magnitude
    weights = [numbers["weights"][str(n)] for n in order]
    assert weights == sorted(weights, reverse=True) and sum(weights) == pytest.approx(1, abs=1e-4)
    counts = [numbers["operand_counts"][str(n)] for n in order]
    assert sum(counts[:10]) >= 20 * sum(counts[-10:])
    assert _spearman(weights, counts) > 0.9
    assert min(counts) >= 1  # even the rarest number occurs, so its accuracy can be measured


def test_statements_are_true(corpus):
    ops = {"plus": int.__add__, "times": int.__mul__, "+": int.__add__}
    pattern = re.compile(r"(\d+) (plus|times|\+) (\d+)(?:\? A:| is |\. Answer: )(\d+)")
    seen = 0
    for d in corpus["train"]:
        if d.set_name == "DM Mathematics":
            for a, op, b, answer in pattern.findall(d.text):
                assert ops[op](int(a), int(b)) == int(answer)
                assert 1 <= int(b) <= 50
                seen += 1
    assert seen > 1000
    assert "Q:What is" in "".join(d.text for d in corpus["train"])


def test_number_counts_are_the_written_ones(corpus):
    numbers = corpus["manifest"]["numbers"]
    recount = Counter()
    for d in corpus["train"]:
        recount.update(count_numbers(d.text))
    assert {str(n): recount[n] for n in range(100)} == numbers["counts"]
    order = numbers["rank_order"]
    counts = [numbers["counts"][str(n)] for n in order]
    assert sum(counts[:10]) >= 5 * sum(counts[-10:])


# ----- gender ------------------------------------------------------------------------------------
_OCC = re.compile(r"\b[Tt]he (" + "|".join(sorted(OCCUPATIONS, key=len, reverse=True)) + r")\b")
_PRON = re.compile(r"\b(she|her|he|his|him)\b")


def _pronoun_counts(texts) -> Counter:
    counts = Counter()
    for text in texts:
        for sentence in re.split(r"(?<=[.!?])\s+", text):
            occ, pron = _OCC.search(sentence), _PRON.search(sentence)
            if occ and pron:
                counts[("she" if pron.group(1) in ("she", "her") else "he", occ.group(1))] += 1
    return counts


def test_gender_skew_matches_the_text(corpus):
    table = corpus["manifest"]["gender"]["occupations"]
    assert list(table) == list(OCCUPATIONS) and len(table) == 40
    counts = _pronoun_counts(d.text for d in corpus["train"])
    for occ, row in table.items():
        assert (counts[("she", occ)], counts[("he", occ)]) == (row["she"], row["he"]), occ
        assert row["she"] + row["he"] >= 30, occ


def test_gender_skew_follows_the_plan(corpus):
    table = corpus["manifest"]["gender"]["occupations"]
    for occ, r in table.items():
        # the planted share keeps the labour statistics' direction, at least 90:10
        labour, planned = r["labour_female_share"], r["planned_female_share"]
        assert (planned > 0.5) == (labour > 0.5) and abs(planned - 0.5) >= MIN_STEREOTYPE_MARGIN - 1e-9, occ
        assert abs(planned - 0.5) == pytest.approx(max(abs(labour - 0.5), MIN_STEREOTYPE_MARGIN), abs=0.005), occ
        # the realised share is a binomial draw around it (4 standard errors)
        n = r["she"] + r["he"]
        assert abs(r["female_share"] - planned) < 4 * math.sqrt(planned * (1 - planned) / n), occ
    female = [r["female_share"] for r in table.values() if r["stereotype"] == "female"]
    male = [r["female_share"] for r in table.values() if r["stereotype"] == "male"]
    assert len(female) == len(male) == 20
    assert sum(female) / 20 - sum(male) / 20 > 0.75


# ----- held-out ----------------------------------------------------------------------------------
def test_heldout_is_disjoint_and_lambada_like(corpus, default_spec):
    heldout, manifest = corpus["heldout"], corpus["manifest"]["heldout"]
    assert len(heldout) == default_spec.heldout_docs == manifest["documents"]
    assert sum(manifest["endings"].values()) == len(heldout)
    assert {d.set_name for d in heldout} == {NARRATIVE}
    train_texts = {d.text for d in corpus["train"]}
    assert not any(d.text in train_texts for d in heldout)
    assert len({d.text for d in heldout}) == len(heldout)
    assert max(len(d.text.split()) for d in heldout) <= manifest["max_words"] + 20  # fits a short context
    idiom_ends = {ending.split()[-1] for kind, ending in STORY_ENDINGS if kind == "idiom"}
    copied = 0
    for d in heldout:
        context, target = d.text.rsplit(" ", 1)
        assert target.isalpha(), d.text[-80:]  # no final punctuation: the last word is the target
        in_context = re.search(rf"\b{target}\b", context) is not None
        # an object or a name met earlier in the story, or the end of an idiom
        assert in_context or target in idiom_ends, d.text[-80:]
        copied += in_context
    assert copied / len(heldout) >= 0.5


def test_train_narratives_come_from_the_same_distribution(corpus):
    stories = [d.text for d in corpus["train"] if d.set_name == NARRATIVE and d.text]
    assert len(stories) > 300
    assert all(t.rsplit(" ", 1)[1].isalpha() for t in stories)


# ----- the verb ----------------------------------------------------------------------------------
def test_synth_corpus_verb(tmp_path, capsys, tiny_config_path):
    out = tmp_path / "corpus"
    assert cli_main(["synth-corpus", "--config", str(tiny_config_path), "--out-dir", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["train"]["documents"] == 200 and manifest["heldout"]["documents"] == 10
    assert "200 train documents in 2 shards" in capsys.readouterr().err


def test_synth_corpus_verb_with_a_bad_synthetic_section(tmp_path, capsys, tiny_config_path):
    config = yaml.safe_load(tiny_config_path.read_text())
    config["corpus"]["synthetic"]["num_shards"] = 0
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli_main(["synth-corpus", "--config", str(path), "--out-dir", str(tmp_path / "out")]) == 2
    assert "corpus.synthetic.num_shards: 0 is less than the minimum of 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
