"""Streaming reader for Pile-format shards: one JSON document per line.

`{"text": "...", "meta": {"pile_set_name": "..."}}`, in `.jsonl`, `.jsonl.gz` or `.jsonl.zst`,
read in file order with bounded memory. Malformed lines (bad JSON, no text, invalid UTF-8: named
with its byte offset in the decompressed stream) fail with file and line number, or are
skipped and counted; empty documents are yielded and counted, never a crash (tokenization
drops them, as GPT-NeoX's preprocess_data.py does; dedup keeps them). A shard with no
documents, or only empty ones, is a warning in the log and in the stats (`empty_shards`), or an
error under `on_empty_shard="error"`. Both choices are a `ReadPolicy`, from the suite's
`corpus.on_malformed` and `corpus.on_empty_shard`.
"""

from __future__ import annotations

import gzip
import io
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import zstandard

from pythia_repro.errors import PythiaReproError


class CorpusError(PythiaReproError):
    """A corpus file that cannot be read as Pile-format JSON lines; names file and line."""


@dataclass(frozen=True)
class Document:
    text: str
    set_name: str | None
    path: str
    line: int  # 1-based line number in its file


@dataclass
class ReadStats:
    """What a pass over the corpus saw; reported by every stage that reads documents."""

    documents: int = 0
    empty: int = 0
    malformed: int = 0
    malformed_examples: list[str] = field(default_factory=list)
    empty_shards: list[str] = field(default_factory=list)  # "PATH: why" of shards without text

    def as_dict(self) -> dict:
        return {
            "documents": self.documents,
            "empty": self.empty,
            "malformed_skipped": self.malformed,
            "malformed_examples": self.malformed_examples,
            "empty_shards": len(self.empty_shards),
            "empty_shard_examples": self.empty_shards[:5],
        }


MALFORMED_POLICIES = ("error", "skip")
EMPTY_SHARD_POLICIES = ("warn", "error")


@dataclass(frozen=True)
class ReadPolicy:
    """What a reader does with a malformed line (error | skip) and with a shard without text
    (warn | error): the suite's `corpus.on_malformed` and `corpus.on_empty_shard`."""

    on_malformed: str = "error"
    on_empty_shard: str = "warn"

    def __post_init__(self) -> None:
        if self.on_malformed not in MALFORMED_POLICIES:
            raise PythiaReproError(f"on_malformed must be one of {MALFORMED_POLICIES}, not {self.on_malformed!r}")
        if self.on_empty_shard not in EMPTY_SHARD_POLICIES:
            raise PythiaReproError(f"on_empty_shard must be one of {EMPTY_SHARD_POLICIES}, "
                                   f"not {self.on_empty_shard!r}")


DEFAULT_POLICY = ReadPolicy()


def handle_empty_shard(path: str, documents: int, empty: int, stats: ReadStats, policy: ReadPolicy) -> None:
    """A shard that held no documents, or only empty ones: counted in `stats.empty_shards` and
    warned about on stderr (the job's log) under on_empty_shard "warn"; CorpusError under "error"."""
    why = "no documents" if documents == 0 else f"only empty documents ({empty:,})"
    if policy.on_empty_shard == "error":
        raise CorpusError(f"{path}: {why}; an empty shard usually means a failed download or copy")
    stats.empty_shards.append(f"{path}: {why}")
    print(f"[corpus] warning: {path}: {why}", file=sys.stderr, flush=True)


class _ZstdReader(io.RawIOBase):
    """Decompresses a .zst stream frame after frame, and fails on a stream that ends inside a frame.

    zstandard's own `stream_reader` returns a truncated file's partial data without complaint,
    which would silently drop the documents of a half-copied shard.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._dctx = zstandard.ZstdDecompressor()
        self._frame = None  # decompressobj of the current frame
        self._buf, self._pos = b"", 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while self._pos == len(self._buf):
            chunk = self._raw.read(1 << 20)
            if not chunk:
                if self._frame is not None and not self._frame.eof:
                    raise zstandard.ZstdError("truncated file: it ends inside a zstd frame")
                return 0
            self._decompress(chunk)
        n = min(len(b), len(self._buf) - self._pos)
        b[:n] = self._buf[self._pos : self._pos + n]
        self._pos += n
        return n

    def _decompress(self, data: bytes) -> None:
        out = []
        while data:
            if self._frame is None or self._frame.eof:  # a file may hold several frames
                self._frame = self._dctx.decompressobj()
            out.append(self._frame.decompress(data))
            data = self._frame.unused_data if self._frame.eof else b""
        self._buf, self._pos = b"".join(out), 0

    def close(self) -> None:
        self._raw.close()
        super().close()


def open_text(path: str | Path) -> IO[str]:
    """Open a possibly compressed text file by its extension, streaming."""
    path = Path(path)
    if path.suffix == ".zst":
        raw = open(path, "rb")  # noqa: SIM115 - closed through the wrapper
        return io.TextIOWrapper(io.BufferedReader(_ZstdReader(raw)), encoding="utf-8")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")  # noqa: SIM115


def open_binary(path: str | Path) -> IO[bytes]:
    """Open a possibly compressed file by its extension, streaming its decompressed bytes."""
    path = Path(path)
    if path.suffix == ".zst":
        raw = open(path, "rb")  # noqa: SIM115 - closed through the wrapper
        return io.BufferedReader(_ZstdReader(raw), 1 << 20)
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return open(path, "rb", buffering=1 << 20)  # noqa: SIM115


def _decode(raw: bytes, path: str, lineno: int, offset: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start : exc.start + 4].hex(" ")
        where = "of the decompressed stream" if Path(path).suffix in (".zst", ".gz") else "in the file"
        raise CorpusError(f"{path}:{lineno}: invalid UTF-8 at byte offset {offset + exc.start:,} {where} "
                          f"(column {exc.start + 1} of the line, bytes {bad}: {exc.reason})") from None


def open_text_for_write(path: str | Path) -> IO[str]:
    """Counterpart of `open_text` for writers of shards (synthetic corpus, dedup output)."""
    path = Path(path)
    if path.suffix == ".zst":
        raw = open(path, "wb")  # noqa: SIM115
        writer = zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=True)
        return io.TextIOWrapper(writer, encoding="utf-8")
    if path.suffix == ".gz":
        return gzip.open(path, "wt", encoding="utf-8")
    return open(path, "w", encoding="utf-8")  # noqa: SIM115


def _parse(line: str, path: str, lineno: int) -> Document:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise CorpusError(f"{path}:{lineno}: malformed JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict) or "text" not in obj:
        raise CorpusError(f"{path}:{lineno}: expected an object with a 'text' field")
    text = obj["text"]
    if not isinstance(text, str):
        raise CorpusError(f"{path}:{lineno}: 'text' must be a string, got {type(text).__name__}")
    meta = obj.get("meta")
    set_name = meta.get("pile_set_name") if isinstance(meta, dict) else None
    return Document(text, set_name, path, lineno)


def iter_documents(
    paths: Iterable[str | Path],
    policy: ReadPolicy = DEFAULT_POLICY,
    stats: ReadStats | None = None,
) -> Iterator[Document]:
    """Yield every document of `paths` in order, malformed lines and empty shards handled by `policy`."""
    stats = stats if stats is not None else ReadStats()
    for path in paths:
        path = str(path)
        if not Path(path).is_file():
            raise CorpusError(f"{path}: corpus file not found")
        documents = empty = 0
        try:
            with open_binary(path) as fh:
                offset = 0  # of the line's first byte, in the decompressed stream
                for lineno, raw in enumerate(fh, start=1):
                    start, offset = offset, offset + len(raw)
                    if not raw.strip():
                        continue  # blank separator lines are not documents
                    try:
                        doc = _parse(_decode(raw, path, lineno, start), path, lineno)
                    except CorpusError as exc:
                        if policy.on_malformed == "error":
                            raise
                        stats.malformed += 1
                        if len(stats.malformed_examples) < 5:
                            stats.malformed_examples.append(str(exc))
                        continue
                    stats.documents += 1
                    documents += 1
                    if not doc.text:
                        stats.empty += 1
                        empty += 1
                    yield doc
        except (OSError, EOFError, zstandard.ZstdError) as exc:
            raise CorpusError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None
        if documents == empty:
            handle_empty_shard(path, documents, empty, stats, policy)
