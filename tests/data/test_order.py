"""GPT-NeoX v1.0's index maps, array for array.

Three independent references pin the vectorised build:
- a hand-computed stream (worked out in the comments below);
- a plain loop written from helpers.cpp's semantics (`_walk_sample_idx`), compared on random
  cases with empty documents, documents longer than a sample, and several epochs;
- arrays recorded once from GPT-NeoX v1.0's own code (gpt2_dataset.py with the compiled
  helpers.cpp) on fixed inputs, which also pin numpy's RandomState stream.
"""

from __future__ import annotations

import hashlib
import math
import os

import numpy as np
import pytest

from pythia_repro.data import order
from pythia_repro.data.order import (
    build_doc_idx,
    build_index_mappings,
    build_index_maps,
    build_sample_idx,
    build_shuffle_idx,
    gpt_neox_num_samples,
    index_map_paths,
    num_epochs,
    shuffle_idx_dtype,
)

# ---------------------------------------------------------------------------------------------
# Reference: a loop over documents, written from the C++ walk, not from our code.


def _walk_sample_idx(sizes, doc_idx, seq_length, n):
    """Rows (doc_idx position, offset) of stream tokens 0, S, 2S, ... by walking the stream.

    Each sample takes S + 1 tokens and gives its last one back to the next sample, so a sample
    that reaches exactly the end of a document stops on that document's last token.
    """
    rows = [(0, 0)]
    pos, off = 0, 0
    for _ in range(n):
        need = seq_length + 1
        while True:
            left = int(sizes[doc_idx[pos]]) - off
            if left >= need:
                off += need - 1
                break
            need -= left
            pos, off = pos + 1, 0
        rows.append((pos, off))
    return np.array(rows, dtype=np.int32)


def _loop_num_epochs(tokens_per_epoch, seq_length, num_samples):
    epochs, total = 0, 0
    while True:
        epochs += 1
        total += tokens_per_epoch
        if (total - 1) // seq_length >= num_samples:
            return epochs


def _reference_maps(sizes, num_samples, seq_length, seed):
    tokens = int(sum(int(s) for s in sizes))
    epochs = _loop_num_epochs(tokens, seq_length, num_samples)
    rng = np.random.RandomState(seed)
    doc_idx = np.array(list(range(len(sizes))) * epochs, dtype=np.int32)
    rng.shuffle(doc_idx)
    n = (epochs * tokens - 1) // seq_length
    sample_idx = _walk_sample_idx(sizes, doc_idx, seq_length, n)
    shuffle_idx = np.arange(n, dtype=np.uint32)
    rng.shuffle(shuffle_idx)
    return epochs, doc_idx, sample_idx, shuffle_idx


def _assert_same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------------------
# Hand-computed streams.


def test_sample_idx_hand_computed() -> None:
    sizes = np.array([3, 0, 5, 2], dtype=np.int32)
    doc_idx = np.array([2, 1, 0, 3], dtype=np.int32)
    # Stream: position 0 = doc 2, tokens 0-4; position 1 = doc 1, empty; position 2 = doc 0,
    # tokens 5-7; position 3 = doc 3, tokens 8-9. 10 tokens.
    # S=3: n = (10 - 1) // 3 = 3 samples; rows are tokens 0, 3, 6, 9:
    #   0 -> (0, 0), 3 -> (0, 3), 6 -> (2, 1) (empty doc skipped), 9 -> (3, 1).
    _assert_same(build_sample_idx(sizes, doc_idx, 3, 1, 10),
                 np.array([[0, 0], [0, 3], [2, 1], [3, 1]], dtype=np.int32))
    # S=4: n = 9 // 4 = 2; tokens 0, 4, 8. Token 4 is doc 2's last token: the sample ending there
    # stays on (0, 4) rather than moving to the next document. Token 8 -> (3, 0).
    _assert_same(build_sample_idx(sizes, doc_idx, 4, 1, 10),
                 np.array([[0, 0], [0, 4], [3, 0]], dtype=np.int32))
    # A stream starting with an empty document still starts at row (0, 0).
    _assert_same(build_sample_idx(np.array([0, 3], dtype=np.int32), np.array([0, 1], dtype=np.int32), 2, 1, 3),
                 np.array([[0, 0], [1, 2]], dtype=np.int32))


def test_num_epochs_and_samples_hand_computed() -> None:
    # 37 tokens, S=4: one epoch gives (37 - 1) // 4 = 9 samples, two give (74 - 1) // 4 = 18.
    assert num_epochs(37, 4, 9) == 1
    assert num_epochs(37, 4, 10) == 2
    assert num_epochs(37, 4, 18) == 2
    assert num_epochs(37, 4, 19) == 3
    assert num_epochs(37, 4, 0) == 1
    with pytest.raises(ValueError):
        num_epochs(0, 4, 1)


def test_num_epochs_matches_gpt_neox_loop() -> None:
    rs = np.random.default_rng(5)
    for _ in range(2000):
        t, s, n = int(rs.integers(1, 500)), int(rs.integers(1, 70)), int(rs.integers(0, 2000))
        assert num_epochs(t, s, n) == _loop_num_epochs(t, s, n)
    # Pythia scale: the Pile's ~300B tokens, 147,164,160 samples of 2048.
    assert num_epochs(301_392_199_681, 2048, 147_164_160) == 1
    assert num_epochs(301_392_199_680, 2048, 147_164_160) == 2
    assert num_epochs(207_000_000_000, 2048, 147_164_160) == 2


def test_num_samples_pythia() -> None:
    # 143,000 steps of 1,024: ceil(146,432,000 * 1.005); the float product is 147164159.99999997.
    assert gpt_neox_num_samples(143_000 * 1024) == 147_164_160
    for t, b in [(10, 16), (1000, 32), (7, 3), (0, 8)]:
        assert gpt_neox_num_samples(t * b) == int(math.ceil(t * b * 1.0 * 1.005))


def test_file_names_are_gpt_neox_names(tmp_path) -> None:
    paths = index_map_paths(tmp_path / "pile_text_document", 147_164_160, 2048, 1234)
    assert {k: p.name for k, p in paths.items()} == {
        k: f"pile_text_document_train_0_indexmap_147164160ns_2048sl_1234s_{k}_idx.npy"
        for k in ("doc", "sample", "shuffle")
    }


def test_shuffle_idx_dtype_rule() -> None:
    limit = np.iinfo(np.uint32).max - 1
    assert shuffle_idx_dtype(0) == np.uint32
    assert shuffle_idx_dtype(147_164_160) == np.uint32
    assert shuffle_idx_dtype(limit - 1) == np.uint32
    assert shuffle_idx_dtype(limit) == np.int64
    assert build_shuffle_idx(10, np.random.RandomState(0)).dtype == np.uint32


# ---------------------------------------------------------------------------------------------
# Recorded from GPT-NeoX v1.0 itself.

# sizes [5, 0, 3, 7, 1, 0, 4, 9, 2, 6], 12 samples of 4, seed 1234 (two epochs).
NEOX_SMALL = {
    "doc": [3, 3, 2, 6, 4, 5, 4, 0, 8, 8, 7, 1, 0, 9, 7, 1, 9, 2, 6, 5],
    "sample": [[0, 0], [0, 4], [1, 1], [1, 5], [2, 2], [3, 3], [7, 1], [8, 0], [10, 0], [10, 4], [10, 8],
               [12, 3], [13, 2], [14, 0], [14, 4], [14, 8], [16, 3], [17, 1], [18, 2]],
    "shuffle": [4, 13, 14, 17, 8, 1, 0, 9, 7, 3, 10, 6, 2, 5, 12, 11, 16, 15],
}
# sizes (i * 7919 % 1013) with every 17th document empty, 1000 documents, 20,000 samples of 64,
# seed 1234: three epochs, 22,385 samples. sha256 of each array's bytes.
NEOX_MEDIUM_SHA = {
    "doc": "deba9b07e6d1c8fabe7e0691dfa669b3510ee0b23b2b3d25b1b91dea05257df2",
    "sample": "0d0282513bded899ae3ee7984e5fdb73e34eede92e2e183bc7f207caeccd336f",
    "shuffle": "7c3789df9a5a3205af98914173a2ea0d513782a8dad2d2bde70b25da9036257d",
}


def test_matches_recorded_gpt_neox_small() -> None:
    sizes = np.array([5, 0, 3, 7, 1, 0, 4, 9, 2, 6], dtype=np.int32)
    maps = build_index_maps(sizes, 12, 4, 1234)
    assert maps.num_epochs == 2
    _assert_same(maps.doc_idx, np.array(NEOX_SMALL["doc"], dtype=np.int32))
    _assert_same(maps.sample_idx, np.array(NEOX_SMALL["sample"], dtype=np.int32))
    _assert_same(maps.shuffle_idx, np.array(NEOX_SMALL["shuffle"], dtype=np.uint32))
    assert len(maps) == 17  # GPT2Dataset.__len__: one short of the 18 samples


def test_matches_recorded_gpt_neox_medium(monkeypatch) -> None:
    monkeypatch.setattr(order, "_DOC_CHUNK", 97)  # many chunks, rows crossing chunk ends
    monkeypatch.setattr(order, "_ROW_CHUNK", 13)
    sizes = (np.arange(1000, dtype=np.int64) * 7919 % 1013).astype(np.int32)
    sizes[::17] = 0
    maps = build_index_maps(sizes, 20_000, 64, 1234)
    assert maps.num_epochs == 3
    assert maps.sample_idx.shape == (22_386, 2) and maps.shuffle_idx.dtype == np.uint32
    assert maps.sample_idx[:3].tolist() == [[0, 0], [2, 1], [2, 65]]
    got = {k: hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
           for k, a in (("doc", maps.doc_idx), ("sample", maps.sample_idx), ("shuffle", maps.shuffle_idx))}
    assert got == NEOX_MEDIUM_SHA


# ---------------------------------------------------------------------------------------------
# Random cases against the loop reference.


def _random_sizes(rs: np.random.Generator, kind: int) -> np.ndarray:
    n = int(rs.integers(1, 50))
    if kind == 0:
        sizes = rs.integers(0, 12, n)  # short documents, many samples span several
    elif kind == 1:
        sizes = rs.integers(0, 3, n)  # mostly empty or one-token documents
    elif kind == 2:
        sizes = (rs.pareto(1.0, n) * 6).astype(np.int64)  # heavy tail: documents of many samples
    else:
        sizes = rs.integers(0, 300, n) * (rs.random(n) < 0.6)  # long documents between empties
    sizes = sizes.astype(np.int32)
    if sizes.sum() < 2:
        sizes[0] = 2
    return sizes


@pytest.mark.parametrize("chunks", [(1 << 23, 1 << 22), (3, 2)])
def test_random_cases_match_loop_reference(monkeypatch, chunks) -> None:
    monkeypatch.setattr(order, "_DOC_CHUNK", chunks[0])
    monkeypatch.setattr(order, "_ROW_CHUNK", chunks[1])
    rs = np.random.default_rng(2024)
    seen_epochs = set()
    for trial in range(400):
        sizes = _random_sizes(rs, trial % 4)
        seq = int(rs.integers(1, 40))
        num_samples = int(rs.integers(0, 3 * max(1, int(sizes.sum()) // seq) + 4))
        seed = int(rs.integers(0, 2**31))
        epochs, doc_idx, sample_idx, shuffle_idx = _reference_maps(sizes, num_samples, seq, seed)
        maps = build_index_maps(sizes, num_samples, seq, seed)
        assert maps.num_epochs == epochs
        _assert_same(maps.doc_idx, doc_idx)
        _assert_same(maps.sample_idx, sample_idx)
        _assert_same(maps.shuffle_idx, shuffle_idx)
        assert maps.sample_idx.shape[0] - 1 >= num_samples
        seen_epochs.add(epochs)
    assert {1, 2, 3} <= seen_epochs


def test_sample_idx_rows_locate_stream_tokens() -> None:
    """Row i is where stream token i*S lives; sample i's tokens are stream[i*S : i*S + S + 1]."""
    rs = np.random.default_rng(7)
    for trial in range(200):
        sizes = _random_sizes(rs, trial % 4)
        doc_idx = np.tile(np.arange(len(sizes), dtype=np.int32), 2)
        rs.shuffle(doc_idx)
        tokens = 2 * int(sizes.sum())
        seq = int(rs.integers(1, 30))
        rows = build_sample_idx(sizes, doc_idx, seq, 2, tokens // 2)
        starts = np.concatenate([[0], np.cumsum(sizes[doc_idx])])
        owner = np.repeat(np.arange(len(doc_idx)), sizes[doc_idx])  # doc_idx position of each token
        for i, (pos, off) in enumerate(rows[1:], start=1):
            assert owner[i * seq] == pos and starts[pos] + off == i * seq


def test_build_doc_idx_is_one_shuffle_of_all_epochs() -> None:
    rng = np.random.RandomState(3)
    doc_idx = build_doc_idx(np.arange(6, dtype=np.int32), 3, rng)
    expected = np.repeat(np.arange(6, dtype=np.int32)[None], 3, axis=0).reshape(-1)
    np.random.RandomState(3).shuffle(expected)
    _assert_same(doc_idx, expected)
    assert np.bincount(doc_idx).tolist() == [3] * 6


# ---------------------------------------------------------------------------------------------
# Files.


def test_build_index_mappings_writes_loads_and_skips(tmp_path, capsys) -> None:
    sizes = np.array([5, 0, 3, 7, 1, 0, 4, 9, 2, 6], dtype=np.int32)
    prefix = tmp_path / "tok"
    maps = build_index_mappings(prefix, sizes, 12, 4, 1234)
    paths = index_map_paths(prefix, 12, 4, 1234)
    assert maps.paths == paths
    for kind in ("doc", "sample", "shuffle"):
        plain = np.load(paths[kind])  # plain .npy, no pickle
        _assert_same(plain, np.array(NEOX_SMALL[kind], dtype=plain.dtype))
    assert isinstance(maps.doc_idx, np.memmap)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths.values())
    mtimes = {k: os.stat(p).st_mtime_ns for k, p in paths.items()}

    again = build_index_mappings(prefix, sizes, 12, 4, 1234)
    assert "skipping" in capsys.readouterr().err
    assert {k: os.stat(p).st_mtime_ns for k, p in paths.items()} == mtimes
    _assert_same(np.asarray(again.sample_idx), np.array(NEOX_SMALL["sample"], dtype=np.int32))

    # A missing or unreadable map makes all three be rebuilt, as GPT-NeoX does.
    paths["shuffle"].unlink()
    paths["sample"].write_bytes(b"not a npy file")
    rebuilt = build_index_mappings(prefix, sizes, 12, 4, 1234)
    _assert_same(np.asarray(rebuilt.shuffle_idx), np.array(NEOX_SMALL["shuffle"], dtype=np.uint32))
    _assert_same(np.asarray(rebuilt.sample_idx), np.array(NEOX_SMALL["sample"], dtype=np.int32))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_maps_of_other_data_are_rebuilt(tmp_path) -> None:
    prefix = tmp_path / "tok"
    build_index_mappings(prefix, np.array([5, 0, 3, 7], dtype=np.int32), 3, 4, 1)
    sizes = np.array([5, 0, 3, 7, 1, 0, 4, 9, 2, 6], dtype=np.int32)
    maps = build_index_mappings(prefix, sizes, 3, 4, 1)  # same file names, more documents
    assert maps.doc_idx.shape == (10,)


def test_rejects_bad_input(tmp_path) -> None:
    with pytest.raises(ValueError, match="int32"):
        build_index_mappings(tmp_path / "t", np.array([1, 2], dtype=np.int64), 1, 2, 0)
    with pytest.raises(ValueError, match="no documents"):
        build_index_mappings(tmp_path / "t", np.array([], dtype=np.int32), 1, 2, 0)
    with pytest.raises(ValueError, match="no tokens"):
        build_index_mappings(tmp_path / "t", np.array([0, 0], dtype=np.int32), 1, 2, 0)


def test_benchmark_runs_scaled_down(tmp_path, repo_root) -> None:
    import subprocess
    import sys

    results = tmp_path / "order.md"
    subprocess.run(
        [sys.executable, str(repo_root / "bench" / "bench_order.py"), "--docs", "20000", "--anchor-rows", "500",
         "--latency-steps", "3", "--pre-rows", "2048", "--out-dir", str(tmp_path / "out"),
         "--results", str(results)],
        check=True, capture_output=True, timeout=300)
    text = results.read_text()
    assert "## standard: 20,000 documents" in text and "## deduped: 20,000 documents" in text
    assert "equal to ours" in text and "TrainingOrder.batch(random step), median" in text
    assert not (tmp_path / "out").exists()  # cleaned up
