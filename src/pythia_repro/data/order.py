"""GPT-NeoX v1.0's data order: the three index maps that fix which tokens each training sample holds.

GPT-NeoX v1.0 (`megatron/data/gpt2_dataset.py`, `megatron/data/helpers.cpp`) trains on a flat
token stream: the documents of every epoch, shuffled together, concatenated end to end and cut
into samples of `seq_length + 1` tokens that overlap by one token (the last token of sample i is
the first of sample i+1, so each is an input of `seq_length` tokens plus its shifted targets).
Three arrays describe that stream and are saved next to the token files:

- ``doc_idx`` (int32, ``num_epochs * num_documents``): the documents in stream order. Every
  epoch lists every document once; the whole array is shuffled in one go with
  ``np.random.RandomState(seed)``, so epochs mix.
- ``sample_idx`` (int32, ``(n + 1, 2)``): row i = (position in ``doc_idx``, token offset in that
  document) of stream token ``i * seq_length``, the first token of sample i; row i+1 is its last.
  Row 0 is (0, 0). A row never points into an empty document (except row 0 when the stream
  starts with one), and a sample that ends on a document's last token ends there, not at offset 0
  of the next document.
- ``shuffle_idx`` (uint32, or int64 from 2**32 - 1 samples on): training sample j is sample
  ``shuffle_idx[j]``. Drawn from the same RandomState right after ``doc_idx``'s shuffle.

with ``n = (num_epochs * tokens_per_epoch - 1) // seq_length`` and ``num_epochs`` the fewest
epochs giving at least ``num_samples`` samples. The arrays here are equal, value and dtype, to
the ones GPT-NeoX v1.0 writes; ``sample_idx`` is computed from a cumulative sum of document
lengths (each document's rows counted and spread with np.repeat) instead of the walk of
`helpers.cpp`, streaming over ``doc_idx`` in chunks so the Pile (~210M documents, 147M samples)
fits in a few GB with no compiled extension.

File names are GPT-NeoX's, so GPT-NeoX itself would load ours:
``{prefix}_{name}_indexmap_{num_samples}ns_{seq_length}sl_{seed}s_{doc,sample,shuffle}_idx.npy``.
Pythia trained with ``train-data-paths`` (one dataset, all documents, name ``train_0``) and asked
for ``ceil(train_iters * global_batch_size * 1.005)`` samples (a batch ramp: its samples x 1.005).
"""

from __future__ import annotations

import math
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pythia_repro.atomic import atomic_file
from pythia_repro.errors import PythiaReproError

INDEX_KINDS = ("doc", "sample", "shuffle")
TRAIN_DATASET_NAME = "train_0"
# Extra samples GPT-NeoX requests per weighted dataset (`get_normalized_weights_and_num_samples`).
NUM_SAMPLES_MARGIN = 1.005

_INT32_MAX = int(np.iinfo(np.int32).max)
# Documents of doc_idx handled per step of the sample_idx build, and sample rows per search.
_DOC_CHUNK = 1 << 23
_ROW_CHUNK = 1 << 22


def gpt_neox_num_samples(train_samples: int, weight: float = 1.0) -> int:
    """Samples GPT-NeoX v1.0 asks a ``train-data-paths`` dataset for: ceil(N * w * 1.005).

    N is the samples training consumes, train_iters x global_batch_size for GPT-NeoX (a batch
    ramp's sum: `BatchSchedule.num_samples`). Computed in floating point exactly as GPT-NeoX does
    (`get_normalized_weights_and_num_samples`; Pythia: 143000 x 1024 -> 147,164,160).
    """
    if train_samples < 0:
        raise PythiaReproError(f"train_samples must be >= 0, got {train_samples}")
    return int(math.ceil(train_samples * weight * NUM_SAMPLES_MARGIN))


def index_map_paths(
    data_prefix: str | Path, num_samples: int, seq_length: int, seed: int, name: str = TRAIN_DATASET_NAME
) -> dict[str, Path]:
    """{'doc': ..., 'sample': ..., 'shuffle': ...}: GPT-NeoX's file names for the three maps."""
    stem = f"{data_prefix}_{name}_indexmap_{num_samples}ns_{seq_length}sl_{seed}s"
    return {kind: Path(f"{stem}_{kind}_idx.npy") for kind in INDEX_KINDS}


def num_epochs(tokens_per_epoch: int, seq_length: int, num_samples: int) -> int:
    """Fewest epochs E with (E * tokens_per_epoch - 1) // seq_length >= num_samples (at least 1).

    GPT-NeoX counts up one epoch at a time; this is the same number in closed form.
    """
    tokens_per_epoch, seq_length, num_samples = int(tokens_per_epoch), int(seq_length), int(num_samples)
    if tokens_per_epoch < 1:
        raise PythiaReproError("the dataset has no tokens, so no number of epochs gives any sample")
    if seq_length < 1:
        raise PythiaReproError(f"seq_length must be >= 1, got {seq_length}")
    # (E*t - 1) // s >= n  <=>  E*t - 1 >= n*s  <=>  E >= (n*s + 1) / t
    return max(1, -(-(num_samples * seq_length + 1) // tokens_per_epoch))


def total_samples(num_epochs_: int, tokens_per_epoch: int, seq_length: int) -> int:
    """Samples the stream of `num_epochs_` epochs holds: sample_idx has one row more."""
    return (int(num_epochs_) * int(tokens_per_epoch) - 1) // int(seq_length)


def build_doc_idx(documents: np.ndarray, num_epochs_: int, rng: np.random.RandomState) -> np.ndarray:
    """`documents` repeated once per epoch, as int32, shuffled whole by `rng` (one shuffle call)."""
    documents = np.asarray(documents)
    if documents.size and (documents.min() < 0 or documents.max() > _INT32_MAX):
        raise PythiaReproError("document ids must fit int32")
    if len(documents) * num_epochs_ > _INT32_MAX:
        # helpers.cpp stores positions in doc_idx as int32.
        raise PythiaReproError(f"{num_epochs_} epochs of {len(documents):,} documents exceed int32 positions")
    doc_idx = np.tile(documents.astype(np.int32, copy=False), num_epochs_)
    rng.shuffle(doc_idx)
    return doc_idx


def build_sample_idx(
    sizes: np.ndarray,
    doc_idx: np.ndarray,
    seq_length: int,
    num_epochs_: int,
    tokens_per_epoch: int,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """The (n + 1, 2) int32 map of `helpers.cpp: build_sample_idx`, computed without a walk.

    Row i locates stream token p = i * seq_length: the position k in doc_idx of the non-empty
    document holding it (the k with ends[k-1] <= p < ends[k], ends being the running token count
    over doc_idx) and the offset p - ends[k-1]. That is where the C++ walk stops: it skips empty
    documents and only moves to the next document while tokens remain to be taken. Row 0 is
    (0, 0) as the walk starts there. Each document's rows are counted from its token range and
    spread with np.repeat, chunk by chunk (linear time, bounded memory).
    `progress(done_rows, total_rows)` is called per chunk.
    """
    seq_length = int(seq_length)
    if seq_length < 1:
        raise PythiaReproError(f"seq_length must be >= 1, got {seq_length}")
    n = total_samples(num_epochs_, tokens_per_epoch, seq_length)
    if n < 0:
        raise PythiaReproError("no tokens to build samples from")
    if len(doc_idx) > _INT32_MAX:
        raise PythiaReproError("doc_idx longer than int32 positions")
    out = np.empty((n + 1, 2), dtype=np.int32)
    out[0] = 0
    next_row = 1  # first row not yet written
    base = 0  # stream tokens before the current chunk of doc_idx
    for start in range(0, len(doc_idx), _DOC_CHUNK):
        if next_row > n:
            break
        lengths = sizes[doc_idx[start : start + _DOC_CHUNK]].astype(np.int64)
        ends = np.cumsum(lengths)
        ends += base
        doc_starts = ends - lengths
        chunk_end = int(ends[-1])
        # Document k holds the rows i with doc_starts[k] <= i*S < ends[k], i.e. rows
        # [ceil(doc_starts[k] / S), ceil(ends[k] / S)): none for an empty document.
        row_ends = -(-ends // seq_length)
        last_row = min(n, (chunk_end - 1) // seq_length) if chunk_end > 0 else -1
        for lo in range(next_row, last_row + 1, _ROW_CHUNK):
            hi = min(last_row + 1, lo + _ROW_CHUNK)
            # Documents holding rows lo and hi - 1: the first whose row range ends past them.
            d0, d1 = np.searchsorted(row_ends, [lo, hi - 1], side="right").tolist()
            firsts = np.maximum(-(-doc_starts[d0 : d1 + 1] // seq_length), lo)
            per_doc = np.minimum(row_ends[d0 : d1 + 1], hi) - firsts
            k = np.repeat(np.arange(d0, d1 + 1), per_doc)
            out[lo:hi, 0] = k + start
            out[lo:hi, 1] = np.arange(lo, hi, dtype=np.int64) * seq_length - doc_starts[k]
            if progress is not None:
                progress(hi - 1, n)
        next_row = max(next_row, last_row + 1)
        base = chunk_end
    if next_row <= n:
        raise PythiaReproError("doc_idx holds fewer tokens than num_epochs * tokens_per_epoch")
    return out


def shuffle_idx_dtype(size: int) -> np.dtype:
    """uint32, or int64 once size >= 2**32 - 2 (GPT-NeoX's rule)."""
    return np.dtype(np.int64 if size >= np.iinfo(np.uint32).max - 1 else np.uint32)


def build_shuffle_idx(size: int, rng: np.random.RandomState) -> np.ndarray:
    """range(size) shuffled by `rng` (one shuffle call), dtype by `shuffle_idx_dtype`."""
    shuffle_idx = np.arange(size, dtype=shuffle_idx_dtype(size))
    rng.shuffle(shuffle_idx)
    return shuffle_idx


@dataclass
class IndexMaps:
    doc_idx: np.ndarray
    sample_idx: np.ndarray
    shuffle_idx: np.ndarray
    num_epochs: int
    tokens_per_epoch: int
    paths: dict[str, Path] | None = None

    def __len__(self) -> int:
        """GPT2Dataset.__len__: one less than the samples built (GPT-NeoX's own off-by-one)."""
        return min(self.shuffle_idx.shape[0] - 1, self.sample_idx.shape[0] - 1)


def build_index_maps(
    sizes: np.ndarray,
    num_samples: int,
    seq_length: int,
    seed: int,
    documents: np.ndarray | None = None,
    log: Callable[[str], None] | None = None,
) -> IndexMaps:
    """All three maps in memory, drawing from one RandomState(seed) in GPT-NeoX's order."""
    log = log or (lambda _msg: None)
    sizes = np.asarray(sizes)
    if documents is None:
        documents = np.arange(len(sizes), dtype=np.int32)
    tokens_per_epoch = int(np.sum(sizes[documents], dtype=np.int64))
    epochs = num_epochs(tokens_per_epoch, seq_length, num_samples)
    rng = np.random.RandomState(seed=seed)
    doc_idx = build_doc_idx(documents, epochs, rng)
    sample_idx = build_sample_idx(sizes, doc_idx, seq_length, epochs, tokens_per_epoch)
    shuffle_idx = build_shuffle_idx(sample_idx.shape[0] - 1, rng)
    log(f"{epochs} epoch(s) of {tokens_per_epoch:,} tokens -> {sample_idx.shape[0] - 1:,} samples")
    return IndexMaps(doc_idx, sample_idx, shuffle_idx, epochs, tokens_per_epoch)


def _peak_rss_gib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _save(path: Path, array: np.ndarray) -> None:
    with atomic_file(path, "wb") as fh:
        np.save(fh, array, allow_pickle=True)


def load_index_maps(paths: dict[str, Path], mmap: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(doc_idx, sample_idx, shuffle_idx), memory-mapped read-only by default."""
    mode = "r" if mmap else None
    doc_idx, sample_idx, shuffle_idx = (np.load(paths[k], mmap_mode=mode) for k in INDEX_KINDS)
    if doc_idx.ndim != 1 or sample_idx.ndim != 2 or sample_idx.shape[1] != 2 or shuffle_idx.ndim != 1:
        raise PythiaReproError(f"index maps {paths['doc'].name} ...: unexpected shapes "
                         f"{doc_idx.shape}, {sample_idx.shape}, {shuffle_idx.shape}")
    return doc_idx, sample_idx, shuffle_idx


def _existing_maps(paths: dict[str, Path], num_docs: int, num_samples: int,
                   epochs: int, tokens_per_epoch: int, seq_length: int) -> IndexMaps | None:
    """The maps on disk if all three load and fit this dataset; None if any is missing or stale."""
    if not all(p.is_file() for p in paths.values()):
        return None
    try:
        doc_idx, sample_idx, shuffle_idx = load_index_maps(paths)
    except (OSError, ValueError):
        return None
    rows = total_samples(epochs, tokens_per_epoch, seq_length) + 1
    if (doc_idx.shape[0] != epochs * num_docs or sample_idx.shape[0] != rows
            or shuffle_idx.shape[0] != rows - 1 or rows - 1 < num_samples):
        return None
    return IndexMaps(doc_idx, sample_idx, shuffle_idx, epochs, tokens_per_epoch, paths)


def build_index_mappings(
    data_prefix: str | Path,
    sizes: np.ndarray,
    num_samples: int,
    seq_length: int,
    seed: int,
    name: str = TRAIN_DATASET_NAME,
    force: bool = False,
    log: Callable[[str], None] | None = None,
) -> IndexMaps:
    """GPT-NeoX's `_build_index_mappings` for all documents: build and save the maps unless all
    three files exist and fit, then return them memory-mapped.

    Each array is saved as soon as it is built (atomically: temporary file, then rename) and
    dropped, so at most doc_idx, sample_idx and `sizes` are in memory together.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    sizes = np.asarray(sizes)
    if sizes.dtype != np.int32:
        raise PythiaReproError(f"document sizes must be int32 as in GPT-NeoX, got {sizes.dtype}")
    if len(sizes) == 0:
        raise PythiaReproError("the dataset has no documents")
    paths = index_map_paths(data_prefix, num_samples, seq_length, seed, name)
    tokens_per_epoch = int(np.sum(sizes, dtype=np.int64))
    epochs = num_epochs(tokens_per_epoch, seq_length, num_samples)
    if not force:
        existing = _existing_maps(paths, len(sizes), num_samples, epochs, tokens_per_epoch, seq_length)
        if existing is not None:
            log(f"[order] index maps exist, skipping: {paths['doc'].name} (and sample, shuffle)")
            return existing
    n = total_samples(epochs, tokens_per_epoch, seq_length)
    log(f"[order] {len(sizes):,} documents, {tokens_per_epoch:,} tokens per epoch, {epochs} epoch(s), "
        f"{n:,} samples of {seq_length}+1 tokens for {num_samples:,} requested (seed {seed})")
    rng = np.random.RandomState(seed=seed)

    t0 = time.monotonic()
    doc_idx = build_doc_idx(np.arange(len(sizes), dtype=np.int32), epochs, rng)
    _save(paths["doc"], doc_idx)
    log(f"[order] doc_idx {doc_idx.shape} built and saved in {time.monotonic() - t0:.1f}s, "
        f"peak RSS {_peak_rss_gib():.2f} GiB")

    t0 = time.monotonic()
    last = [t0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 10:
            last[0] = now
            log(f"[order] sample_idx {done:,}/{total:,} rows ({100 * done / max(total, 1):.1f}%)")

    sample_idx = build_sample_idx(sizes, doc_idx, seq_length, epochs, tokens_per_epoch, progress)
    del doc_idx
    _save(paths["sample"], sample_idx)
    num_rows = sample_idx.shape[0]
    del sample_idx
    log(f"[order] sample_idx ({num_rows:,}, 2) built and saved in {time.monotonic() - t0:.1f}s, "
        f"peak RSS {_peak_rss_gib():.2f} GiB")

    t0 = time.monotonic()
    shuffle_idx = build_shuffle_idx(num_rows - 1, rng)
    _save(paths["shuffle"], shuffle_idx)
    del shuffle_idx
    log(f"[order] shuffle_idx ({num_rows - 1:,},) built and saved in {time.monotonic() - t0:.1f}s, "
        f"peak RSS {_peak_rss_gib():.2f} GiB")

    doc_idx, sample_idx, shuffle_idx = load_index_maps(paths)
    return IndexMaps(doc_idx, sample_idx, shuffle_idx, epochs, tokens_per_epoch, paths)
