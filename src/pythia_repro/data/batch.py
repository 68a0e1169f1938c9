"""The exact tokens of any training sample or global batch, and where in training a sample was.

Two sources give the same answer for a run that followed GPT-NeoX v1.0's data order:

- `TrainingOrder`: the token file plus the three index maps of `order.py`. Training sample j is
  sample ``i = shuffle_idx[j]``: the ``seq_length + 1`` stream tokens from row i of sample_idx to
  row i+1 inclusive (rows are (position in doc_idx, offset in that document)).
- `PreshuffledOrder`: EleutherAI's published pre-shuffled files (an MMapIndexedDataset whose
  item j is training sample j, 2049 tokens).

Step t trains on training samples ``[t * B, (t + 1) * B)`` (B = global batch size) in that order:
GPT-NeoX's sequential sampler splits them, in order, into the micro-batches of the data-parallel
ranks and gradient-accumulation steps. So training sample j is at step ``j // B``, position
``j % B`` in the batch. With a batch ramp (PaLM) the steps are cut by the run's `BatchSchedule`
instead: step t is ``[samples_before(t), samples_before(t + 1))``. Both classes are map-style
datasets (`len`, `[j]`), samples as int64 like GPT-NeoX's `GPT2Dataset`, and load everything
memory-mapped: opening one is instant and costs no memory at Pile scale.
"""

from __future__ import annotations

import bisect
import mmap
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pythia_repro.data.batch_schedule import BatchSchedule
from pythia_repro.data.indexed import IndexedDataset
from pythia_repro.data.order import (
    TRAIN_DATASET_NAME,
    build_index_mappings,
    index_map_paths,
    load_index_maps,
)
from pythia_repro.errors import PythiaReproError

# shuffle_idx entries scanned per step when looking a sample up (4M x 4 bytes).
_SCAN_CHUNK = 1 << 22


@dataclass(frozen=True)
class Location:
    """Where training sample `training_index` (= unshuffled sample `sample_index`) was trained."""

    training_index: int
    sample_index: int | None
    step: int
    position: int  # in the global batch of `step`

    def as_dict(self) -> dict:
        return {"training_index": self.training_index, "sample_index": self.sample_index,
                "step": self.step, "position": self.position}


class _BatchedOrder:
    """What both sources share: samples by training index, batches by step, step arithmetic."""

    batch_schedule: BatchSchedule
    seq_length: int

    def __len__(self) -> int:
        raise NotImplementedError

    def sample(self, j: int) -> np.ndarray:
        raise NotImplementedError

    def __getitem__(self, j: int) -> np.ndarray:
        return self.sample(j)

    @property
    def num_steps(self) -> int:
        """Full global batches the order holds (GPT-NeoX builds ~0.5% more than training uses)."""
        return self.batch_schedule.step_of(len(self))[0]

    def _training_index(self, j: int) -> int:
        j = int(j)
        if not 0 <= j < len(self):
            raise IndexError(f"training sample {j} out of range: the order holds {len(self):,} samples")
        return j

    def samples(self, start: int, stop: int) -> np.ndarray:
        """Training samples [start, stop) as an int64 array (stop - start, seq_length + 1)."""
        if not 0 <= start <= stop <= len(self):
            raise IndexError(f"samples [{start}, {stop}) out of range: the order holds {len(self):,}")
        out = np.empty((stop - start, self.seq_length + 1), dtype=np.int64)
        for row, j in enumerate(range(start, stop)):
            out[row] = self.sample(j)
        return out

    def batch(self, step: int) -> np.ndarray:
        """The global batch of `step`: int64 (its batch size, seq_length + 1), in batch order."""
        step = int(step)
        if not 0 <= step < self.num_steps:
            raise IndexError(f"step {step} out of range: the order holds {self.num_steps:,} full batches "
                             f"of {self.batch_schedule}")
        return self.samples(self.batch_schedule.samples_before(step), self.batch_schedule.samples_before(step + 1))

    def step_of(self, j: int) -> tuple[int, int]:
        """(step, position in that step's batch) of training sample j."""
        return self.batch_schedule.step_of(self._training_index(j))

    def locate_training_index(self, j: int) -> Location:
        step, position = self.step_of(j)
        return Location(int(j), None, step, position)


class TrainingOrder(_BatchedOrder):
    """GPT-NeoX v1.0's order over a token file: `batch(step)`, `sample(j)`, `locate_sample(i)`.

    The index maps must exist (`pythia-repro order`, or pass ``build=True`` to build them here
    as GPT-NeoX would on first use). ``batch_schedule`` is the run's (a plain number: one batch
    size for every step). ``num_samples`` defaults to GPT-NeoX's request for ``train_iters``
    steps of it, which is also what names the map files.
    """

    def __init__(
        self,
        data_prefix: str | Path,
        train_iters: int,
        batch_schedule: BatchSchedule | int,
        seq_length: int,
        seed: int,
        *,
        num_samples: int | None = None,
        name: str = TRAIN_DATASET_NAME,
        build: bool = False,
    ) -> None:
        self._args = dict(data_prefix=data_prefix, train_iters=train_iters, batch_schedule=batch_schedule,
                          seq_length=seq_length, seed=seed, num_samples=num_samples, name=name)
        self.data_prefix = str(data_prefix)
        self.train_iters, self.batch_schedule = int(train_iters), _schedule(batch_schedule)
        self.seq_length, self.seed = int(seq_length), int(seed)
        self.num_samples = num_samples if num_samples is not None else self.batch_schedule.num_samples(
            self.train_iters)
        self.dataset = IndexedDataset(self.data_prefix)
        # Samples touch a few KB at random places: no read-ahead around each page fault.
        self._tokens = _map_tokens(self.data_prefix, self.dataset.dtype, random_access=True)
        self.paths = index_map_paths(self.data_prefix, self.num_samples, self.seq_length, self.seed, name)
        if build:
            build_index_mappings(self.data_prefix, self.dataset.sizes, self.num_samples, self.seq_length,
                                 self.seed, name)
        missing = [str(p) for p in self.paths.values() if not p.is_file()]
        if missing:
            batch = (f"--global-batch-size {self.batch_schedule.final}" if not self.batch_schedule.ramp
                     else "--config SUITE.yaml")  # a ramp is the suite's training.batch_ramp
            raise PythiaReproError(
                f"index map {missing[0]} not found; build the maps with `pythia-repro order "
                f"--data-prefix {self.data_prefix} --train-iters {self.train_iters} {batch} "
                f"--seq-length {self.seq_length} --seed {self.seed}`")
        self.doc_idx, self.sample_idx, self.shuffle_idx = load_index_maps(self.paths)
        if len(self.doc_idx) % max(len(self.dataset), 1) or int(self.sample_idx[-1, 0]) >= len(self.doc_idx):
            raise PythiaReproError(f"{self.paths['doc']} does not fit {self.data_prefix} ({len(self.dataset):,} "
                             f"documents, doc_idx of {len(self.doc_idx):,}): maps of another token file?")
        # GPT2Dataset.__len__: min(len(shuffle_idx) - 1, len(sample_idx) - 1), one short of the
        # samples built; the last training sample is never reached by GPT-NeoX's sampler.
        self._length = min(len(self.shuffle_idx) - 1, len(self.sample_idx) - 1)
        # Sample rows' document positions, for the binary searches of locate_document.
        self._row_docs = _Column(self.sample_idx, 0)

    def __getstate__(self) -> dict:
        # Pickle (e.g. into DataLoader workers) by arguments; the memory maps reopen there.
        return self._args

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    def __len__(self) -> int:
        return self._length

    @property
    def num_epochs(self) -> int:
        return len(self.doc_idx) // len(self.dataset)

    def sample_index(self, j: int) -> int:
        """The unshuffled sample (row of sample_idx) that training sample j is."""
        return int(self.shuffle_idx[self._training_index(j)])

    def sample(self, j: int) -> np.ndarray:
        """Training sample j: int64 (seq_length + 1,)."""
        return self.gather([self.sample_index(j)])[0]

    def unshuffled_sample(self, i: int, out: np.ndarray | None = None) -> np.ndarray:
        """Sample i of the stream (before shuffling): its seq_length + 1 tokens as int64.

        Reads document by document through IndexedDataset.get, as GPT2Dataset.__getitem__ does;
        `gather` gives the same tokens for many samples at once.
        """
        i = int(i)
        if not 0 <= i < len(self.sample_idx) - 1:
            raise IndexError(f"sample {i} out of range: the stream holds {len(self.sample_idx) - 1:,} samples")
        (first, first_offset), (last, last_offset) = self.sample_idx[i], self.sample_idx[i + 1]
        first, first_offset, last, last_offset = int(first), int(first_offset), int(last), int(last_offset)
        if out is None:
            out = np.empty(self.seq_length + 1, dtype=np.int64)
        get, docs = self.dataset.get, self.doc_idx
        if first == last:
            out[:] = get(int(docs[first]), first_offset, last_offset - first_offset + 1)
            return out
        # The rest of the first document, whole documents between, the head of the last one
        # up to and including its boundary token (the first token of sample i + 1).
        piece = get(int(docs[first]), first_offset)
        filled = len(piece)
        out[:filled] = piece
        for pos in range(first + 1, last):
            piece = get(int(docs[pos]))
            out[filled : filled + len(piece)] = piece
            filled += len(piece)
        out[filled:] = get(int(docs[last]), 0, last_offset + 1)
        return out

    def samples(self, start: int, stop: int) -> np.ndarray:
        """Training samples [start, stop): int64 (stop - start, seq_length + 1)."""
        if not 0 <= start <= stop <= len(self):
            raise IndexError(f"samples [{start}, {stop}) out of range: the order holds {len(self):,}")
        return self.gather(np.asarray(self.shuffle_idx[start:stop]))

    def gather(self, sample_indices) -> np.ndarray:
        """Unshuffled samples `sample_indices` as int64 (len, seq_length + 1), in one gather.

        Each sample is 1 + (last - first) pieces of documents; where every piece starts and how
        long it is comes from a few vectorised lookups, then each piece is one slice copy.
        """
        idx = np.asarray(sample_indices, dtype=np.int64).reshape(-1)
        width = self.seq_length + 1
        if idx.size == 0:
            return np.empty((0, width), dtype=np.int64)
        if idx.min() < 0 or idx.max() >= len(self.sample_idx) - 1:
            raise IndexError(f"sample out of range: the stream holds {len(self.sample_idx) - 1:,} samples")
        first = np.asarray(self.sample_idx[idx], dtype=np.int64)
        last = np.asarray(self.sample_idx[idx + 1], dtype=np.int64)
        counts = last[:, 0] - first[:, 0] + 1  # document pieces per sample
        owner = np.repeat(np.arange(len(idx)), counts)
        piece_start = np.cumsum(counts) - counts
        pos = first[owner, 0] + (np.arange(len(owner)) - piece_start[owner])
        docs = np.asarray(self.doc_idx[pos], dtype=np.int64)
        begin = np.where(pos == first[owner, 0], first[owner, 1], 0)
        end = np.where(pos == last[owner, 0], last[owner, 1] + 1, self.dataset.sizes[docs])
        lengths = end - begin
        if lengths.sum() != len(idx) * width:
            raise PythiaReproError(f"index maps {self.paths['sample']} do not match {self.data_prefix}")
        starts = self.dataset.pointers[docs] // self.dataset.dtype.itemsize + begin
        out = np.empty(len(idx) * width, dtype=np.int64)
        tokens, filled = self._tokens, 0
        # One slice copy per piece (a few thousand per batch): cheaper than materialising a
        # per-token index of the whole batch.
        for start, length in zip(starts.tolist(), lengths.tolist(), strict=True):
            out[filled : filled + length] = tokens[start : start + length]
            filled += length
        return out.reshape(len(idx), width)

    def locate_sample(self, i: int) -> Location:
        """Where unshuffled sample i was trained: the j with shuffle_idx[j] == i.

        Scans shuffle_idx (about a second for Pythia's 147M samples); `locate_samples` does many
        in one scan. The step may lie past train_iters: GPT-NeoX builds ~0.5% spare samples.
        """
        return self.locate_samples([i])[int(i)]

    def locate_samples(self, indices) -> dict[int, Location]:
        """{i: Location} for unshuffled samples `indices`, in one pass over shuffle_idx."""
        wanted = np.unique(np.asarray(indices, dtype=np.int64))
        n = len(self.sample_idx) - 1
        if wanted.size and (wanted[0] < 0 or wanted[-1] >= n):
            bad = int(wanted[0] if wanted[0] < 0 else wanted[-1])
            raise IndexError(f"sample {bad} out of range: the stream holds {n:,} samples")
        found: dict[int, Location] = {}
        for start in range(0, len(self.shuffle_idx), _SCAN_CHUNK):
            if len(found) == wanted.size:
                break
            chunk = np.asarray(self.shuffle_idx[start : start + _SCAN_CHUNK])
            offsets = np.flatnonzero(np.isin(chunk, wanted))
            steps, positions = self.batch_schedule.step_of(start + offsets)
            for offset, step, position in zip(offsets.tolist(), steps.tolist(), positions.tolist(), strict=True):
                found[int(chunk[offset])] = Location(start + offset, int(chunk[offset]), step, position)
        missing = [int(i) for i in wanted if int(i) not in found]
        if missing:  # shuffle_idx is a permutation of all samples, so only a damaged file gets here
            raise PythiaReproError(f"sample {missing[0]} is not in {self.paths['shuffle']}")
        return found

    def inverse_shuffle(self) -> np.ndarray:
        """inv with inv[shuffle_idx[j]] = j: training index of every unshuffled sample (in memory)."""
        inv = np.empty(len(self.shuffle_idx), dtype=np.int64)
        for start in range(0, len(self.shuffle_idx), _SCAN_CHUNK):
            chunk = np.asarray(self.shuffle_idx[start : start + _SCAN_CHUNK])
            inv[chunk] = np.arange(start, start + len(chunk), dtype=np.int64)
        return inv

    def locate_training_index(self, j: int) -> Location:
        step, position = self.step_of(j)
        return Location(int(j), self.sample_index(j), step, position)

    def locate_document(self, document: int) -> list[dict]:
        """Every training sample holding tokens of `document`, in stream order.

        A document appears once per epoch (epochs are shuffled together), so each entry names
        its position in doc_idx, the document's tokens [begin, end) the sample holds, the
        unshuffled sample index and where it was trained. Empty documents are in no sample.
        """
        document = int(document)
        if not 0 <= document < len(self.dataset):
            raise IndexError(f"document {document} out of range for {len(self.dataset):,} documents")
        size = int(self.dataset.sizes[document])
        if size == 0:
            return []
        positions = []
        for start in range(0, len(self.doc_idx), _SCAN_CHUNK):
            hits = np.flatnonzero(self.doc_idx[start : start + _SCAN_CHUNK] == document)
            positions.extend(start + int(h) for h in hits)
        n = len(self.sample_idx) - 1
        entries = []
        for pos in positions:
            # Sample i spans rows i..i+1 inclusive and rows are sorted, so it can hold tokens of
            # doc_idx[pos] only if row i starts at or before pos and row i+1 at or after it.
            first = max(0, bisect.bisect_left(self._row_docs, pos) - 1)
            last = min(n - 1, bisect.bisect_right(self._row_docs, pos) - 1)
            for i in range(first, last + 1):
                (f, f_off), (l_, l_off) = (tuple(int(v) for v in self.sample_idx[r]) for r in (i, i + 1))
                if not f <= pos <= l_:
                    continue
                begin = f_off if f == pos else 0
                end = l_off + 1 if l_ == pos else size
                if begin < end:
                    entries.append({"doc_idx_position": pos, "document_tokens": [begin, end], "sample_index": i})
        locations = self.locate_samples([e["sample_index"] for e in entries])
        for e in entries:
            e.update(locations[e["sample_index"]].as_dict())
        return entries


def _schedule(batch_schedule: BatchSchedule | int) -> BatchSchedule:
    if isinstance(batch_schedule, BatchSchedule):
        return batch_schedule
    return BatchSchedule.constant(batch_schedule)


def _map_tokens(prefix: str, dtype: np.dtype, random_access: bool) -> np.ndarray:
    """PREFIX.bin as a read-only array over a memory map (plain ndarray: no memmap overhead)."""
    with open(prefix + ".bin", "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            return np.empty(0, dtype=dtype)
        mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    if random_access and hasattr(mapped, "madvise") and hasattr(mmap, "MADV_RANDOM"):
        mapped.madvise(mmap.MADV_RANDOM)
    return np.frombuffer(mapped, dtype=dtype)


class _Column:
    """A read-only sequence view of one column of a 2-D (memory-mapped) array, for bisect."""

    def __init__(self, array: np.ndarray, column: int) -> None:
        self.array, self.column = array, column

    def __len__(self) -> int:
        return self.array.shape[0]

    def __getitem__(self, i: int) -> int:
        return int(self.array[i, self.column])


class PreshuffledOrder(_BatchedOrder):
    """EleutherAI's pre-shuffled token files: item j is training sample j (seq_length + 1 tokens).

    The rows are contiguous in the .bin, so a batch is one slice of the memory map.
    """

    def __init__(self, prefix: str | Path, batch_schedule: BatchSchedule | int, seq_length: int | None = None) -> None:
        self._args = dict(prefix=prefix, batch_schedule=batch_schedule, seq_length=seq_length)
        self.prefix = str(prefix)
        self.batch_schedule = _schedule(batch_schedule)
        self.dataset = IndexedDataset(self.prefix)
        sizes = self.dataset.sizes
        if len(sizes) == 0:
            raise PythiaReproError(f"{self.prefix}: the pre-shuffled file holds no samples")
        row = int(sizes[0])
        if seq_length is not None and row != int(seq_length) + 1:
            raise PythiaReproError(
                f"{self.prefix}: rows of {row} tokens, expected seq_length + 1 = {int(seq_length) + 1}")
        if int(sizes.min()) != row or int(sizes.max()) != row:
            raise PythiaReproError(f"{self.prefix}: rows differ in length ({int(sizes.min())}..{int(sizes.max())} "
                             "tokens): not a pre-shuffled file of training samples")
        self.seq_length = row - 1
        # Items are stored back to back, so the .bin is a (samples, row) matrix.
        self._tokens = _map_tokens(self.prefix, self.dataset.dtype, random_access=False).reshape(len(sizes), row)

    def __getstate__(self) -> dict:
        return self._args

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    def __len__(self) -> int:
        return len(self.dataset)

    def sample(self, j: int) -> np.ndarray:
        return np.asarray(self._tokens[self._training_index(j)], dtype=np.int64)

    def samples(self, start: int, stop: int) -> np.ndarray:
        if not 0 <= start <= stop <= len(self):
            raise IndexError(f"samples [{start}, {stop}) out of range: the file holds {len(self):,}")
        return np.asarray(self._tokens[start:stop], dtype=np.int64)


def locations(order: TrainingOrder | PreshuffledOrder, *, training_samples=(), samples=(), documents=(),
              train_iters: int | None = None) -> dict[str, list]:
    """Where training samples J, unshuffled samples I and documents D were trained, as the
    `locate` verb prints it; with `train_iters`, each entry says whether its step was trained on
    (GPT-NeoX builds 0.5% spare samples past the last step)."""
    result: dict[str, list] = {}
    if training_samples:
        result["training_samples"] = [order.locate_training_index(j).as_dict() for j in training_samples]
    if (samples or documents) and isinstance(order, PreshuffledOrder):
        raise PythiaReproError("--sample and --document need the index maps, not a pre-shuffled file")
    if samples:
        found = order.locate_samples(samples)
        result["samples"] = [found[int(i)].as_dict() for i in samples]
    if documents:
        result["documents"] = [{"document": d, "size": int(order.dataset.sizes[d]),
                                "samples": order.locate_document(d)} for d in documents]
    if train_iters is not None:
        for entries in result.values():
            for entry in entries:
                for loc in [entry, *entry.get("samples", [])]:
                    if "step" in loc:
                        loc["trained"] = loc["step"] < train_iters
    return result
