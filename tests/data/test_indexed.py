"""GPT-NeoX MMapIndexedDataset files: exact bytes, round trip, merge, and clear errors."""

from __future__ import annotations

import os
import pickle
import stat
import struct

import numpy as np
import pytest

from pythia_repro.data.indexed import (
    IndexedDataset,
    IndexedDatasetBuilder,
    best_fitting_dtype,
)
from pythia_repro.errors import PythiaReproError

DOCS = [[5, 6, 0], [0], [7, 8, 9, 10, 0]]


def _build(prefix, docs, dtype=np.uint16):
    with IndexedDatasetBuilder(f"{prefix}.bin", dtype) as builder:
        for doc in docs:
            builder.add_document(np.array(doc))
        builder.finalize(f"{prefix}.idx")


def _expected_idx(sizes, itemsize, code):
    """The index as GPT-NeoX v1.0 lays it out, packed by hand from the format description."""
    n = len(sizes)
    pointers = [sum(sizes[:i]) * itemsize for i in range(n)]
    doc_idx = list(range(n + 1))
    return (
        b"MMIDIDX\x00\x00"
        + struct.pack("<Q", 1)
        + struct.pack("<B", code)
        + struct.pack("<Q", n)
        + struct.pack("<Q", n + 1)
        + struct.pack(f"<{n}i", *sizes)
        + struct.pack(f"<{n}q", *pointers)
        + struct.pack(f"<{n + 1}q", *doc_idx)
    )


@pytest.mark.parametrize(("dtype", "code", "fmt"), [(np.uint16, 8, "H"), (np.int32, 4, "i")])
def test_bytes_match_hand_packed_gpt_neox_layout(tmp_path, dtype, code, fmt):
    _build(tmp_path / "t", DOCS, dtype)
    flat = [t for doc in DOCS for t in doc]
    assert (tmp_path / "t.bin").read_bytes() == struct.pack(f"<{len(flat)}{fmt}", *flat)
    sizes = [len(d) for d in DOCS]
    assert (tmp_path / "t.idx").read_bytes() == _expected_idx(sizes, np.dtype(dtype).itemsize, code)


def test_round_trip(tmp_path):
    _build(tmp_path / "t", DOCS)
    ds = IndexedDataset(tmp_path / "t")
    assert len(ds) == 3
    assert ds.dtype == np.uint16
    assert ds.sizes.dtype == np.int32 and ds.pointers.dtype == np.int64 and ds.doc_idx.dtype == np.int64
    assert ds.sizes.tolist() == [3, 1, 5]
    assert ds.pointers.tolist() == [0, 6, 8]
    assert ds.doc_idx.tolist() == [0, 1, 2, 3]
    assert [ds[i].tolist() for i in range(3)] == DOCS
    assert ds[-1].tolist() == DOCS[-1]
    assert ds.get(2, offset=1, length=2).tolist() == [8, 9]
    assert ds.get(2, offset=3).tolist() == [10, 0]
    assert ds.num_tokens == 9
    with pytest.raises(IndexError):
        ds[3]
    with pytest.raises(IndexError):
        ds.get(0, offset=2, length=5)
    assert pickle.loads(pickle.dumps(ds))[2].tolist() == DOCS[2]


def test_reads_a_file_written_independently(tmp_path):
    """A pair written straight from the format (as EleutherAI's files are) reads back."""
    docs = [[50276, 1, 0], [3, 0]]
    (tmp_path / "x.bin").write_bytes(struct.pack("<5H", 50276, 1, 0, 3, 0))
    (tmp_path / "x.idx").write_bytes(_expected_idx([3, 2], 2, 8))
    ds = IndexedDataset(str(tmp_path / "x"))
    assert [ds[i].tolist() for i in range(len(ds))] == docs


def test_empty_dataset(tmp_path):
    _build(tmp_path / "e", [])
    ds = IndexedDataset(tmp_path / "e")
    assert len(ds) == 0 and ds.doc_idx.tolist() == [0] and ds.num_tokens == 0


def test_best_fitting_dtype():
    assert best_fitting_dtype(50277) == np.uint16
    assert best_fitting_dtype(65499) == np.uint16
    assert best_fitting_dtype(65500) == np.int32
    assert best_fitting_dtype(128000) == np.int32


def test_out_of_range_ids_are_refused(tmp_path):
    with IndexedDatasetBuilder(tmp_path / "t.bin", np.uint16) as builder:
        with pytest.raises(ValueError, match="do not fit uint16"):
            builder.add_document(np.array([1, 70000]))
    assert list(tmp_path.iterdir()) == []  # the temporary is gone, nothing published


def test_nothing_published_before_finalize(tmp_path):
    with IndexedDatasetBuilder(tmp_path / "t.bin", np.uint16) as builder:
        builder.add_document(np.array([1, 2]))
        assert not (tmp_path / "t.bin").exists()
    assert list(tmp_path.iterdir()) == []


def test_published_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        _build(tmp_path / "t", DOCS)
    finally:
        os.umask(old)
    assert {stat.S_IMODE((tmp_path / f"t{ext}").stat().st_mode) for ext in (".bin", ".idx")} == {0o644}


def test_merge_equals_one_go(tmp_path):
    _build(tmp_path / "a", DOCS[:2])
    _build(tmp_path / "b", DOCS[2:])
    _build(tmp_path / "whole", DOCS)
    with IndexedDatasetBuilder(tmp_path / "m.bin", np.uint16) as builder:
        builder.merge_file(tmp_path / "a")
        builder.merge_file(str(tmp_path / "b"))
        builder.finalize(tmp_path / "m.idx")
    for ext in (".bin", ".idx"):
        assert (tmp_path / f"m{ext}").read_bytes() == (tmp_path / f"whole{ext}").read_bytes()


def test_merge_refuses_other_dtype(tmp_path):
    _build(tmp_path / "a", DOCS, np.int32)
    with IndexedDatasetBuilder(tmp_path / "m.bin", np.uint16) as builder:
        with pytest.raises(ValueError, match="dtype"):
            builder.merge_file(tmp_path / "a")


def test_missing_files_name_the_file(tmp_path):
    with pytest.raises(PythiaReproError, match=r"nope\.idx"):
        IndexedDataset(tmp_path / "nope")
    _build(tmp_path / "t", DOCS)
    (tmp_path / "t.bin").unlink()
    with pytest.raises(PythiaReproError, match=r"t\.bin"):
        IndexedDataset(tmp_path / "t")


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda b: b[:20], "truncated token index"),
        (lambda b: b[:-8], "truncated token index"),
        (lambda b: b + b"\x00", "trailing bytes"),
        (lambda b: b"XXXXXXXXX" + b[9:], "not a GPT-NeoX"),
        (lambda b: b[:9] + struct.pack("<Q", 2) + b[17:], "version 2"),
        (lambda b: b[:17] + b"\x09" + b[18:], "dtype code 9"),
    ],
)
def test_corrupt_index_names_the_file(tmp_path, corrupt, message):
    _build(tmp_path / "t", DOCS)
    idx = tmp_path / "t.idx"
    idx.write_bytes(corrupt(idx.read_bytes()))
    with pytest.raises(ValueError, match=message) as info:
        IndexedDataset(tmp_path / "t")
    assert str(idx) in str(info.value)


def test_truncated_bin_is_detected(tmp_path):
    _build(tmp_path / "t", DOCS)
    data = tmp_path / "t.bin"
    data.write_bytes(data.read_bytes()[:-2])
    with pytest.raises(ValueError, match=r"t\.bin.*truncated"):
        IndexedDataset(tmp_path / "t")
