"""Planted repeats in the synthetic mini-Pile: the memorization study's ground truth."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from pythia_repro.data.dedup import word_shingles
from pythia_repro.data.synthetic import (
    PLANTED_MAX_JACCARD,
    PLANTED_MAX_WORDS,
    PLANTED_MIN_WORDS,
    SyntheticSpec,
    generate,
    is_planted,
    jaccard,
    planted_windows,
    write_corpus,
)
from pythia_repro.data.tokenizer import train_bpe

OFF = SyntheticSpec(num_shards=2, docs_per_shard=300, heldout_docs=20, exact_duplicate_rate=0.03,
                    near_duplicate_rate=0.05, seed=7)
ON = dataclasses.replace(OFF, planted_repeats=4, planted_copies=10)


@pytest.fixture(scope="module")
def corpora():
    return generate(OFF), generate(ON)


def _texts(corpus) -> list[str]:
    return [d.text for shard in corpus.shards for d in shard]


def test_defaults_are_off_and_leave_the_corpus_as_before(tmp_path):
    spec = SyntheticSpec(**{f.name: getattr(OFF, f.name) for f in dataclasses.fields(OFF)
                            if not f.name.startswith("planted_")})
    assert spec.planted_repeats == 0 and spec.planted_copies == 0
    manifest = write_corpus(spec, tmp_path)
    # The manifest of a corpus without the feature has no trace of it (same bytes as before it existed).
    assert "planted" not in manifest
    assert not any(k.startswith("planted") for k in manifest["spec"])
    assert set(manifest) == {"generator", "spec", "train", "duplicates", "numbers", "gender", "heldout"}


def test_only_planted_slots_change(corpora):
    off, on = corpora
    planted = on.manifest["planted"]
    slots = {i for pos in planted["positions"] for i in pos}
    for i, (a, b) in enumerate(zip(_texts(off), _texts(on), strict=True)):
        assert b in planted["texts"] if i in slots else a == b
    assert [d.text for d in off.heldout] == [d.text for d in on.heldout]
    assert off.manifest["duplicates"] == on.manifest["duplicates"]
    assert off.manifest["train"]["empty_documents"] == on.manifest["train"]["empty_documents"]


def test_copies_are_verbatim_at_the_recorded_positions(corpora):
    _, on = corpora
    planted = on.manifest["planted"]
    texts = _texts(on)
    assert len(planted["texts"]) == ON.planted_repeats
    assert all(len(p) == ON.planted_copies for p in planted["positions"])
    every = [i for p in planted["positions"] for i in p]
    assert len(every) == len(set(every)) == ON.planted_repeats * ON.planted_copies
    for text, positions in zip(planted["texts"], planted["positions"], strict=True):
        assert [i for i, t in enumerate(texts) if t == text] == positions
    # Never on a duplicate pair or an empty document, whose meaning must not change.
    dups = on.manifest["duplicates"]
    reserved = {i for p in dups["exact_pairs"] + dups["near_pairs"] for i in p[:2]}
    reserved |= set(on.manifest["train"]["empty_documents"])
    assert not reserved & set(every)


def test_repeats_are_distinct_boilerplate_of_the_planned_length(corpora):
    _, on = corpora
    texts = on.manifest["planted"]["texts"]
    for t in texts:
        assert PLANTED_MIN_WORDS <= len(t.split()) <= PLANTED_MAX_WORDS
    for a, b in itertools.combinations(texts, 2):
        assert jaccard(a, b) <= PLANTED_MAX_JACCARD


def test_same_spec_same_repeats_and_seed_changes_them(corpora):
    _, on = corpora
    assert generate(ON).manifest["planted"] == on.manifest["planted"]
    other = generate(dataclasses.replace(ON, seed=8)).manifest["planted"]
    assert other["texts"] != on.manifest["planted"]["texts"]


def test_too_many_copies_is_an_error():
    with pytest.raises(ValueError, match="planted repeats"):
        generate(dataclasses.replace(OFF, planted_repeats=10, planted_copies=100))


def test_minhash_collapses_the_copies_to_one(corpora):
    """At the dedup threshold (0.87), all copies of a repeat are one cluster and repeats stay apart."""
    datasketch = pytest.importorskip("datasketch")
    _, on = corpora
    planted = on.manifest["planted"]
    lsh = datasketch.MinHashLSH(threshold=0.87, num_perm=128)
    texts = _texts(on)
    slots = sorted(i for p in planted["positions"] for i in p)
    for i in slots:
        mh = datasketch.MinHash(num_perm=128, seed=1)
        mh.update_batch([" ".join(s).encode() for s in word_shingles(texts[i], 5)])
        lsh.insert(i, mh)
    for positions in planted["positions"]:
        mh = datasketch.MinHash(num_perm=128, seed=1)
        mh.update_batch([" ".join(s).encode() for s in word_shingles(texts[positions[0]], 5)])
        assert sorted(lsh.query(mh)) == positions


def test_planted_windows_flag_exactly_the_samples_inside_a_copy(corpora):
    _, on = corpora
    texts = _texts(on)
    tokenizer = train_bpe(texts, 512)
    width = 24
    windows = planted_windows(tokenizer, on.manifest["planted"]["texts"], width)
    # The token stream as the pipeline builds it: each document encoded alone, then EOD (id 0).
    stream, owner = [], []
    for i, enc in enumerate(tokenizer.encode_batch(texts, add_special_tokens=False)):
        stream.extend(enc.ids + [0])
        owner.extend([i] * (len(enc.ids) + 1))
    stream, owner = np.array(stream, np.int64), np.array(owner)
    slots = {i for p in on.manifest["planted"]["positions"] for i in p}
    starts = np.arange(0, len(stream) - width, 7)
    seqs = np.stack([stream[s : s + width + 3] for s in starts])
    flags = is_planted(seqs, windows)
    # Inside one planted document (its EOD excluded) <=> flagged.
    inside = np.array([owner[s] in slots and owner[s + width - 1] == owner[s] and 0 not in stream[s : s + width]
                       for s in starts])
    assert flags.any() and (~flags).any()
    np.testing.assert_array_equal(flags, inside)
    assert not is_planted(seqs, set()).any()
    with pytest.raises(ValueError, match="token ids"):
        is_planted(seqs[:, :5], windows)
