"""The last step: write a shard's kept documents."""

from __future__ import annotations

import contextlib
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np
import zstandard

from pythia_repro.atomic import atomic_file, remove_leftover_temporaries
from pythia_repro.data.corpus import open_text
from pythia_repro.data.dedup.clusters import KEEP_FORMAT
from pythia_repro.data.dedup.files import _npz_arrays
from pythia_repro.data.dedup.minhash import DedupError


@contextlib.contextmanager
def _atomic_compressed(path: Path) -> Iterator[IO[bytes]]:
    remove_leftover_temporaries(path)  # of a killed earlier run; this job owns the file
    with atomic_file(path, "wb") as raw:
        if path.suffix == ".zst":
            with zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=False) as out:
                yield out
        elif path.suffix == ".gz":
            with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
                yield out
        else:
            yield raw


def apply_keep(input_path: str | Path, keep_path: str | Path, shard_index: int, output: str | Path) -> dict:
    """Write the kept documents of one shard to `output`, atomically.

    Each is its original JSON line (every field kept; line ends read as "\\n", as all readers of
    the corpus see them). The kept lines' text lengths are checked against the signatures, so a
    shard that changed since `dedup-signatures` fails instead of dropping the wrong documents.
    """
    input_path, output = Path(input_path), Path(output)
    if not Path(keep_path).is_file():
        raise DedupError(f"{keep_path}: keep file not found")
    arrays = _npz_arrays(Path(keep_path))
    try:
        meta = json.loads(str(np.asarray(arrays["meta"])[()]))
    except (KeyError, json.JSONDecodeError) as exc:
        raise DedupError(f"{keep_path}: not a dedup keep file ({exc})") from None
    if meta.get("format") != KEEP_FORMAT:
        raise DedupError(f"{keep_path}: format {meta.get('format')!r}, expected {KEEP_FORMAT!r}")
    if f"line_{shard_index}" not in arrays:
        known = [s["shard"] for s in meta["shards"]]
        raise DedupError(f"{keep_path}: no shard {shard_index} (has {known})")
    lines = np.asarray(arrays[f"line_{shard_index}"])
    nbytes = np.asarray(arrays[f"nbytes_{shard_index}"])
    if not input_path.is_file():
        raise DedupError(f"{input_path}: corpus file not found")
    written = 0
    bytes_out = 0
    lines_read = 0
    with open_text(input_path) as fh, _atomic_compressed(output) as out:
        next_line = int(lines[0]) if len(lines) else -1
        try:
            for lineno, line in enumerate(fh, start=1):
                lines_read = lineno
                if lineno != next_line:
                    continue
                text = json.loads(line)["text"]
                size = len(text.encode("utf-8", "surrogatepass"))
                if size != nbytes[written]:
                    raise DedupError(
                        f"{input_path}:{lineno}: document is {size} bytes, but {nbytes[written]} when its "
                        "signature was computed; the shard changed, rerun dedup-signatures"
                    )
                if not line.endswith("\n"):
                    line += "\n"
                data = line.encode("utf-8", "surrogatepass")
                out.write(data)
                bytes_out += size
                written += 1
                next_line = int(lines[written]) if written < len(lines) else -1
        except (OSError, EOFError, zstandard.ZstdError, UnicodeDecodeError, json.JSONDecodeError,
                KeyError, TypeError) as exc:
            raise DedupError(f"{input_path}:{lines_read}: cannot read ({type(exc).__name__}: {exc})") from None
        if written != len(lines):
            raise DedupError(
                f"{input_path}: ended at line {lines_read}, but kept line {int(lines[written])} is expected; "
                "the shard changed, rerun dedup-signatures"
            )
    entry = next(s for s in meta["shards"] if s["shard"] == shard_index)
    return {"shard": shard_index, "input": str(input_path), "documents_in": entry["documents"],
            "documents_out": written, "bytes_out": bytes_out, "output": str(output)}
