"""Streaming reader for Pile-format shards: one JSON document per line.

`{"text": "...", "meta": {"pile_set_name": "..."}}`, in `.jsonl`, `.jsonl.gz` or `.jsonl.zst`,
read in file order with bounded memory. Malformed lines fail with file and line number, or are
skipped and counted; empty documents are yielded and counted, never a crash (tokenization
drops them, as GPT-NeoX's preprocess_data.py does; dedup keeps them).
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import zstandard


class CorpusError(ValueError):
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

    def as_dict(self) -> dict:
        return {
            "documents": self.documents,
            "empty": self.empty,
            "malformed_skipped": self.malformed,
            "malformed_examples": self.malformed_examples,
        }


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
    on_malformed: str = "error",
    stats: ReadStats | None = None,
) -> Iterator[Document]:
    """Yield every document of `paths` in order. `on_malformed` is "error" or "skip"."""
    if on_malformed not in ("error", "skip"):
        raise ValueError(f"on_malformed must be 'error' or 'skip', not {on_malformed!r}")
    stats = stats if stats is not None else ReadStats()
    for path in paths:
        path = str(path)
        if not Path(path).is_file():
            raise CorpusError(f"{path}: corpus file not found")
        try:
            with open_text(path) as fh:
                for lineno, line in enumerate(fh, start=1):
                    if not line.strip():
                        continue  # blank separator lines are not documents
                    try:
                        doc = _parse(line, path, lineno)
                    except CorpusError as exc:
                        if on_malformed == "error":
                            raise
                        stats.malformed += 1
                        if len(stats.malformed_examples) < 5:
                            stats.malformed_examples.append(str(exc))
                        continue
                    stats.documents += 1
                    if not doc.text:
                        stats.empty += 1
                    yield doc
        except (OSError, EOFError, zstandard.ZstdError, UnicodeDecodeError) as exc:
            raise CorpusError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None
