"""Signature files: streaming .npz writing, memory-mapped reading, and the per-shard step."""

from __future__ import annotations

import io
import json
import struct
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from pythia_repro.atomic import atomic_file
from pythia_repro.data.corpus import DEFAULT_POLICY, ReadPolicy, ReadStats, iter_documents
from pythia_repro.data.dedup.minhash import (
    BATCH_BYTES,
    BATCH_DOCS,
    DedupError,
    DedupParams,
    MinHasher,
    SignatureBatch,
)
from pythia_repro.progress import Progress

SIGNATURES_FORMAT = "pythia-repro/dedup-signatures/1"


# ----------------------------------------------------------------------------------------------
# .npz files written in a streaming way and read memory-mapped
# ----------------------------------------------------------------------------------------------


class _NpzWriter:
    """Uncompressed .npz (np.load reads it) whose members can be fed in chunks from spools."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._zip = zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED, allowZip64=True)

    def _member(self, name: str, dtype: np.dtype, shape: tuple, chunks: Iterable[bytes]) -> None:
        header = _npy_header(dtype, shape)
        info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_STORED
        info.file_size = len(header) + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        with self._zip.open(info, "w") as out:
            out.write(header)
            for chunk in chunks:
                out.write(chunk)

    def array(self, name: str, arr: np.ndarray) -> None:
        arr = np.asarray(arr, order="C")  # (not ascontiguousarray: it makes 0-d arrays 1-d)
        self._member(name, arr.dtype, arr.shape, [arr.tobytes()] if arr.size else [])

    def spooled(self, name: str, dtype: np.dtype, shape: tuple, files: Sequence[Path]) -> None:
        def chunks() -> Iterator[bytes]:
            for path in files:
                with open(path, "rb") as fh:
                    while block := fh.read(1 << 22):
                        yield block

        self._member(name, np.dtype(dtype), shape, chunks())

    def close(self) -> None:
        self._zip.close()


def _npy_header(dtype: np.dtype, shape: tuple) -> bytes:
    """The .npy magic and header of a C-order array (what np.save writes before the data)."""
    buf = io.BytesIO()
    d = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buf, d)
    return buf.getvalue()


def _npz_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every member of an uncompressed .npz, memory-mapped (read-only)."""
    out: dict[str, np.ndarray] = {}
    try:
        with open(path, "rb") as fh, zipfile.ZipFile(fh) as zf:
            for info in zf.infolist():
                name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                if info.compress_type != zipfile.ZIP_STORED:
                    raise DedupError(f"{path}: member {name} is compressed; expected an uncompressed .npz")
                fh.seek(info.header_offset)
                local = fh.read(30)
                if local[:4] != b"PK\x03\x04":
                    raise DedupError(f"{path}: damaged zip member {name}")
                name_len, extra_len = struct.unpack("<HH", local[26:30])
                fh.seek(info.header_offset + 30 + name_len + extra_len)
                major, _ = np.lib.format.read_magic(fh)
                read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                shape, fortran, dtype = read(fh)
                if dtype.hasobject:
                    raise DedupError(f"{path}: member {name} holds Python objects; refusing to load it")
                offset = fh.tell()
                count = int(np.prod(shape, dtype=np.int64))
                if count == 0:
                    out[name] = np.empty(shape, dtype=dtype)
                elif not shape:  # 0-d (metadata string): read it
                    out[name] = np.frombuffer(fh.read(dtype.itemsize), dtype=dtype).reshape(())
                else:
                    out[name] = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                                          order="F" if fortran else "C")
    except (zipfile.BadZipFile, OSError, ValueError, struct.error) as exc:
        if isinstance(exc, DedupError):
            raise
        raise DedupError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
    return out


# ----------------------------------------------------------------------------------------------
# Step 1: per-shard signatures
# ----------------------------------------------------------------------------------------------


@dataclass
class ShardSignatures:
    """One shard's signature file (arrays memory-mapped), or the same built in memory."""

    shard: int
    signatures: np.ndarray  # (n, num_perm) uint32, row = document index in the shard
    bands: np.ndarray  # (bands, n) uint64
    sig_hash: np.ndarray  # (n,) uint64
    nbytes: np.ndarray  # (n,) uint64
    n_shingles: np.ndarray  # (n,) uint32
    line: np.ndarray  # (n,) uint64, 1-based line of the document in its file
    meta: dict = field(default_factory=dict)
    path: str = "<memory>"

    def __len__(self) -> int:
        return len(self.sig_hash)

    @classmethod
    def from_batch(cls, shard: int, batch: SignatureBatch, params: DedupParams) -> ShardSignatures:
        n = len(batch.nbytes)
        meta = {"format": SIGNATURES_FORMAT, "shard": shard, "documents": n, "params": params.as_dict()}
        return cls(shard, batch.signatures, batch.bands, batch.sig_hash, batch.nbytes, batch.n_shingles,
                   np.arange(1, n + 1, dtype=np.uint64), meta)

    @classmethod
    def load(cls, path: str | Path) -> ShardSignatures:
        path = Path(path)
        if not path.is_file():
            raise DedupError(f"{path}: signature file not found")
        arrays = _npz_arrays(path)
        required = ("meta", "signatures", "bands", "sig_hash", "nbytes", "n_shingles", "line")
        missing = [k for k in required if k not in arrays]
        if missing:
            raise DedupError(f"{path}: not a dedup signature file (missing {', '.join(missing)})")
        try:
            meta = json.loads(str(np.asarray(arrays["meta"])[()]))
        except (json.JSONDecodeError, TypeError) as exc:
            raise DedupError(f"{path}: unreadable metadata ({exc})") from None
        if meta.get("format") != SIGNATURES_FORMAT:
            raise DedupError(f"{path}: format {meta.get('format')!r}, expected {SIGNATURES_FORMAT!r}")
        sigs = cls(int(meta["shard"]), arrays["signatures"], arrays["bands"], arrays["sig_hash"],
                   arrays["nbytes"], arrays["n_shingles"], arrays["line"], meta, str(path))
        n = meta["documents"]
        p = meta["params"]
        shapes = {
            "signatures": (sigs.signatures.shape, (n, p["num_perm"])),
            "bands": (sigs.bands.shape, (p["bands"], n)),
            **{k: (getattr(sigs, k).shape, (n,)) for k in ("sig_hash", "nbytes", "n_shingles", "line")},
        }
        for key, (got, want) in shapes.items():
            if tuple(got) != tuple(want):
                raise DedupError(f"{path}: {key} has shape {tuple(got)}, expected {tuple(want)} (truncated file?)")
        return sigs


class _Spool:
    """Append-only raw files for each output array, assembled into the .npz at the end."""

    def __init__(self, directory: Path, names: Sequence[str]) -> None:
        self.paths = {name: directory / f"{name}.raw" for name in names}
        self._fh = {name: open(p, "wb") for name, p in self.paths.items()}  # noqa: SIM115

    def write(self, name: str, arr: np.ndarray) -> None:
        self._fh[name].write(np.ascontiguousarray(arr).tobytes())

    def close(self) -> None:
        for fh in self._fh.values():
            fh.close()


def _batches(
    docs: Iterable, batch_bytes: int = BATCH_BYTES, batch_docs: int = BATCH_DOCS
) -> Iterator[tuple[list[str], list[int]]]:
    texts: list[str] = []
    lines: list[int] = []
    size = 0
    for doc in docs:
        texts.append(doc.text)
        lines.append(doc.line)
        size += len(doc.text)
        if size >= batch_bytes or len(texts) >= batch_docs:
            yield texts, lines
            texts, lines, size = [], [], 0
    if texts:
        yield texts, lines


def shard_signatures(
    input_path: str | Path,
    shard_index: int,
    output: str | Path,
    params: DedupParams,
    policy: ReadPolicy = DEFAULT_POLICY,
    log: IO[str] | None = None,
) -> dict:
    """Signatures of one shard to `output` (.npz), atomically; returns the file's metadata."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    hasher = MinHasher(params)
    stats = ReadStats()
    n = 0
    start = time.monotonic()
    names = ["signatures", "sig_hash", "nbytes", "n_shingles", "line"] + [f"band{b}" for b in range(params.bands)]
    with tempfile.TemporaryDirectory(prefix=f".{output.name}.spool-", dir=output.parent) as tmp:
        spool = _Spool(Path(tmp), names)
        try:
            with Progress(f"dedup-signatures {shard_index}", unit="docs", stream=log or sys.stderr) as prog:
                for texts, lines in _batches(iter_documents([input_path], policy, stats)):
                    batch = hasher.batch(texts)
                    spool.write("signatures", batch.signatures)
                    spool.write("sig_hash", batch.sig_hash)
                    spool.write("nbytes", batch.nbytes)
                    spool.write("n_shingles", batch.n_shingles)
                    spool.write("line", np.asarray(lines, dtype=np.uint64))
                    for b in range(params.bands):
                        spool.write(f"band{b}", batch.bands[b])
                    n += len(texts)
                    prog.update(len(texts))
        finally:
            spool.close()
        meta = {
            "format": SIGNATURES_FORMAT,
            "shard": int(shard_index),
            "input": str(input_path),
            "documents": n,
            "read_stats": stats.as_dict(),
            "read_policy": asdict(policy),
            "params": params.as_dict(),
            "seconds": round(time.monotonic() - start, 3),
        }
        with atomic_file(output, "wb") as fh:
            npz = _NpzWriter(fh)
            npz.array("meta", np.array(json.dumps(meta, sort_keys=True)))
            p = spool.paths
            npz.spooled("signatures", np.uint32, (n, params.num_perm), [p["signatures"]])
            npz.spooled("bands", np.uint64, (params.bands, n), [p[f"band{b}"] for b in range(params.bands)])
            npz.spooled("sig_hash", np.uint64, (n,), [p["sig_hash"]])
            npz.spooled("nbytes", np.uint64, (n,), [p["nbytes"]])
            npz.spooled("n_shingles", np.uint32, (n,), [p["n_shingles"]])
            npz.spooled("line", np.uint64, (n,), [p["line"]])
            npz.close()
    return meta

