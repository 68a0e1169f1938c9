"""GPT-NeoX token files (`MMapIndexedDataset`): PREFIX.bin holds every token, PREFIX.idx the index.

Byte for byte what GPT-NeoX v1.0 (megatron/data/indexed_dataset.py) writes, so GPT-NeoX and
Pythia's utilities read our files and we read theirs, EleutherAI's published ones included.

PREFIX.bin: the token ids of all items, concatenated, no header.
PREFIX.idx, little endian:
    magic b"MMIDIDX\\x00\\x00" | uint64 version = 1 | uint8 dtype code
    | uint64 n_items | uint64 n_doc_idx
    | int32[n_items] sizes (tokens per item)
    | int64[n_items] pointers (byte offset of each item in .bin: exclusive cumsum of sizes * itemsize)
    | int64[n_doc_idx] doc_idx (0, then the item count at each document end)
We write one item per document, so doc_idx is 0, 1, ..., n_items.
"""

from __future__ import annotations

import array
import contextlib
import os
import secrets
import shutil
import struct
from pathlib import Path

import numpy as np

from pythia_repro.atomic import atomic_file, remove_leftover_temporaries
from pythia_repro.errors import PythiaReproError

_MAGIC = b"MMIDIDX\x00\x00"
_VERSION = 1
_HEADER = struct.Struct("<9sQBQQ")  # magic, version, dtype code, n_items, n_doc_idx (34 bytes)
DTYPE_CODES = {
    1: np.dtype(np.uint8),
    2: np.dtype(np.int8),
    3: np.dtype(np.int16),
    4: np.dtype(np.int32),
    5: np.dtype(np.int64),
    6: np.dtype(np.float32),
    7: np.dtype(np.float64),
    8: np.dtype(np.uint16),
}
_CODE_OF = {dtype: code for code, dtype in DTYPE_CODES.items()}


def best_fitting_dtype(vocab_size: int) -> np.dtype:
    """GPT-NeoX's choice: uint16 when every id fits with margin (vocab < 65,500), else int32."""
    return np.dtype(np.uint16) if vocab_size < 65500 else np.dtype(np.int32)


def _paths(prefix: str | Path) -> tuple[str, str]:
    # String concatenation, not with_suffix: prefixes such as "pile.v1/text" contain dots.
    prefix = os.fspath(prefix)
    return prefix + ".idx", prefix + ".bin"


def read_index(idx_path: str | Path) -> tuple[np.dtype, np.ndarray, np.ndarray, np.ndarray]:
    """(dtype, sizes, pointers, doc_idx) of an .idx file, arrays memory-mapped read-only.

    Raises FileNotFoundError or ValueError naming the file when it is missing or not a
    complete index (wrong magic, version or dtype, truncated, trailing bytes).
    """
    idx_path = os.fspath(idx_path)
    if not os.path.isfile(idx_path):
        raise PythiaReproError(f"{idx_path}: token index file not found")
    file_size = os.path.getsize(idx_path)
    with open(idx_path, "rb") as fh:
        head = fh.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise PythiaReproError(f"{idx_path}: truncated token index ({file_size} bytes, header needs {_HEADER.size})")
    magic, version, code, n_items, n_doc_idx = _HEADER.unpack(head)
    if magic != _MAGIC:
        raise PythiaReproError(f"{idx_path}: not a GPT-NeoX MMapIndexedDataset index (magic {magic!r})")
    if version != _VERSION:
        raise PythiaReproError(f"{idx_path}: unsupported index version {version} (expected {_VERSION})")
    if code not in DTYPE_CODES:
        raise PythiaReproError(f"{idx_path}: unknown dtype code {code}")
    expected = _HEADER.size + 4 * n_items + 8 * n_items + 8 * n_doc_idx
    if file_size != expected:
        what = "truncated" if file_size < expected else "trailing bytes in"
        raise PythiaReproError(
            f"{idx_path}: {what} token index ({file_size} bytes; header promises {n_items} items and"
            f" {n_doc_idx} doc_idx entries = {expected} bytes)"
        )
    if expected == _HEADER.size:  # np.memmap cannot map zero bytes
        empty = np.empty(0, np.int64)
        return DTYPE_CODES[code], np.empty(0, np.int32), empty, empty.copy()
    buf = np.memmap(idx_path, mode="r", dtype=np.uint8)
    offset = _HEADER.size
    sizes = np.frombuffer(buf, np.int32, n_items, offset)
    pointers = np.frombuffer(buf, np.int64, n_items, offset + sizes.nbytes)
    doc_idx = np.frombuffer(buf, np.int64, n_doc_idx, offset + sizes.nbytes + pointers.nbytes)
    return DTYPE_CODES[code], sizes, pointers, doc_idx


def write_index(idx_path: str | Path, dtype: np.dtype, sizes: np.ndarray, doc_idx: np.ndarray) -> None:
    """Write an .idx file (pointers derived from sizes), atomically."""
    dtype = np.dtype(dtype)
    sizes = np.asarray(sizes, dtype=np.int32)
    doc_idx = np.asarray(doc_idx, dtype=np.int64)
    pointers = np.zeros(len(sizes), dtype=np.int64)
    np.cumsum(sizes[:-1], dtype=np.int64, out=pointers[1:])
    pointers *= dtype.itemsize
    with atomic_file(idx_path, "wb") as fh:
        fh.write(_HEADER.pack(_MAGIC, _VERSION, _CODE_OF[dtype], len(sizes), len(doc_idx)))
        fh.write(sizes.astype("<i4", copy=False).tobytes())
        fh.write(pointers.astype("<i8", copy=False).tobytes())
        fh.write(doc_idx.astype("<i8", copy=False).tobytes())


class IndexedDataset:
    """Read-only view of PREFIX.idx + PREFIX.bin; items are zero-copy numpy views of the .bin."""

    def __init__(self, prefix: str | Path) -> None:
        self.prefix = os.fspath(prefix)
        idx_path, bin_path = _paths(prefix)
        self.dtype, self.sizes, self.pointers, self.doc_idx = read_index(idx_path)
        if not os.path.isfile(bin_path):
            raise PythiaReproError(f"{bin_path}: token data file not found")
        expected = int(self.pointers[-1]) + int(self.sizes[-1]) * self.dtype.itemsize if len(self.sizes) else 0
        actual = os.path.getsize(bin_path)
        if actual != expected:
            raise PythiaReproError(
                f"{bin_path}: {actual} bytes, but {idx_path} describes {expected} bytes of tokens"
                " (truncated or mismatched pair)"
            )
        self._tokens = np.memmap(bin_path, mode="r", dtype=self.dtype) if expected else np.empty(0, self.dtype)

    def __reduce__(self):
        # Pickle (e.g. into DataLoader workers) by path; the memory maps reopen on the other side.
        return IndexedDataset, (self.prefix,)

    def __len__(self) -> int:
        return len(self.sizes)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.get(i)

    def get(self, i: int, offset: int = 0, length: int | None = None) -> np.ndarray:
        """Tokens [offset, offset + length) of item i (to its end when length is None)."""
        n = len(self.sizes)
        if not -n <= i < n:
            raise IndexError(f"item {i} out of range for {n} items in {self.prefix}")
        size = int(self.sizes[i])
        if length is None:
            length = size - offset
        if offset < 0 or length < 0 or offset + length > size:
            raise IndexError(f"tokens [{offset}, {offset + length}) out of range for item {i} of size {size}")
        start = int(self.pointers[i]) // self.dtype.itemsize + offset
        return self._tokens[start : start + length]

    @property
    def num_tokens(self) -> int:
        return len(self._tokens)


class IndexedDatasetBuilder:
    """Streaming writer: tokens go straight to a temporary .bin; only sizes stay in memory.

    Nothing appears under the final names until `finalize`, which renames the .bin and .idx into
    place; leaving the `with` block without finalizing (an error, a kill) removes the temporary.
    """

    def __init__(self, bin_path: str | Path, dtype: np.dtype) -> None:
        self.dtype = np.dtype(dtype)
        if self.dtype not in _CODE_OF:
            raise PythiaReproError(f"token dtype {self.dtype} has no GPT-NeoX dtype code")
        self.bin_path = Path(bin_path)
        self.bin_path.parent.mkdir(parents=True, exist_ok=True)
        remove_leftover_temporaries(self.bin_path)  # of a killed earlier run; this job owns the file
        self._tmp = self.bin_path.parent / f".{self.bin_path.name}.{secrets.token_hex(4)}.tmp"
        # Created 0666 less the umask, like any published file (mkstemp's 0600 would lock out a group).
        self._file = os.fdopen(os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb")
        self._sizes = array.array("i")  # int32, 4 bytes a document
        self._doc_idx = array.array("q", [0])
        if self.dtype.kind in "iu":
            info = np.iinfo(self.dtype)
            self._bounds = (info.min, info.max)
        else:
            self._bounds = None

    def __enter__(self) -> IndexedDatasetBuilder:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._file.closed:
            self.abort()

    def add_document(self, tokens: np.ndarray) -> None:
        """Append one document as one item (its tokens, EOD included if the caller appended one)."""
        tokens = np.asarray(tokens)
        if tokens.dtype != self.dtype:
            self._check_range(tokens)
            tokens = tokens.astype(self.dtype)
        self._file.write(tokens.astype(self.dtype.newbyteorder("<"), copy=False).tobytes())
        self._sizes.append(tokens.size)
        self._doc_idx.append(len(self._sizes))

    def _check_range(self, tokens: np.ndarray) -> None:
        # A silent wrap-around (id 70000 stored as uint16) would corrupt training data unnoticed.
        if self._bounds and tokens.size and not np.can_cast(tokens.dtype, self.dtype):
            lo, hi = tokens.min(), tokens.max()
            if lo < self._bounds[0] or hi > self._bounds[1]:
                raise PythiaReproError(f"token ids [{lo}, {hi}] do not fit {self.dtype} ({self.bin_path})")

    def merge_file(self, prefix: str | Path) -> None:
        """Append all items of another token file, as if its documents had been added here.

        Unlike GPT-NeoX v1.0's merge_file_ (which drops the other file's document boundaries),
        doc_idx is carried over, so merging per-shard files gives exactly the one-go file.
        """
        idx_path, bin_path = _paths(prefix)
        other = IndexedDataset(prefix)
        if other.dtype != self.dtype:
            raise PythiaReproError(f"{idx_path}: dtype {other.dtype} differs from this file's {self.dtype}")
        base = len(self._sizes)
        self._sizes.frombytes(np.ascontiguousarray(other.sizes, dtype=np.int32).tobytes())
        self._doc_idx.frombytes((np.asarray(other.doc_idx[1:], dtype=np.int64) + base).tobytes())
        with open(bin_path, "rb") as fh:
            shutil.copyfileobj(fh, self._file, 16 << 20)

    def finalize(self, idx_path: str | Path) -> None:
        """Move the .bin to its final name, then write the .idx atomically (a stale .idx left by a
        kill between the two fails the reader's size check)."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._tmp, self.bin_path)
        write_index(idx_path, self.dtype, np.frombuffer(self._sizes, np.int32), np.frombuffer(self._doc_idx, np.int64))

    def abort(self) -> None:
        """Discard everything written so far."""
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)

    @property
    def num_documents(self) -> int:
        return len(self._sizes)
