"""Corpus shards -> GPT-NeoX token files, streaming and parallel; per-shard files -> one file.

What GPT-NeoX's tools/preprocess_data.py --append-eod writes: every document, in order, becomes
one item of its token ids followed by `<|endoftext|>`. Empty documents are counted and dropped,
as GPT-NeoX's reader does (`filter(lambda x: x, ...)` in preprocess_data.py): an item for them
would shift every later document index and so the whole data order away from Pythia's.

Speed: the BPE runs in `tokenizers`' Rust thread pool (`encode_batch_fast`, the GIL released)
on one batch while this thread parses the next batch and writes the previous one, so all cores
stay on BPE. Against GPT-NeoX's pool of processes encoding one document at a time, this drops
the offsets `encode` computes and nobody uses, and the pickling of every document's text and
ids between processes (bench/results/tokenize.md). Memory is bounded by a few batches.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from pythia_repro.atomic import write_json
from pythia_repro.data.corpus import DEFAULT_POLICY, ReadPolicy, ReadStats, iter_documents
from pythia_repro.data.indexed import IndexedDataset, IndexedDatasetBuilder, best_fitting_dtype
from pythia_repro.data.tokenizer import eod_id, load_tokenizer
from pythia_repro.errors import PythiaReproError
from pythia_repro.progress import Progress

BATCH_CHARS = 1 << 20  # text per encode call, which spreads its documents over all cores
BATCH_DOCS = 1024
QUEUED = 2  # batches parsed ahead of the encoder while this thread writes, so the pool never waits


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def set_workers(workers: int) -> None:
    """Size tokenizers' thread pool, which runs all BPE. Takes effect only before this process's
    first parallel encode."""
    os.environ["RAYON_NUM_THREADS"] = str(workers)
    os.environ["TOKENIZERS_PARALLELISM"] = "true"


def _batches(texts: Iterable[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    chars = 0
    for text in texts:
        batch.append(text)
        chars += len(text)
        if chars >= BATCH_CHARS or len(batch) >= BATCH_DOCS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def tokenize_files(
    inputs: Iterable[str | Path],
    tokenizer_path: str | Path,
    output_prefix: str | Path,
    policy: ReadPolicy = DEFAULT_POLICY,
    progress_interval: float = 5.0,
) -> dict:
    """Tokenize the documents of `inputs`, in order, into OUTPUT_PREFIX.bin/.idx; returns stats.

    Nothing is published unless every document was read and written (a malformed line under
    on_malformed "error" names file:line and leaves no output).
    """
    tokenizer = load_tokenizer(tokenizer_path)
    eod = eod_id(tokenizer, str(tokenizer_path))
    dtype = best_fitting_dtype(tokenizer.get_vocab_size())
    output_prefix = os.fspath(output_prefix)
    read_stats = ReadStats()
    docs = iter_documents(inputs, policy, read_stats)
    tokens = 0

    def write(encodings) -> None:
        nonlocal tokens
        for encoding in encodings:
            ids = encoding.ids
            ids.append(eod)
            builder.add_document(np.fromiter(ids, dtype, len(ids)))
            tokens += len(ids)
        progress.update(len(encodings))

    with (
        IndexedDatasetBuilder(output_prefix + ".bin", dtype) as builder,
        ThreadPoolExecutor(1) as encoder,
        Progress("tokenize", unit="docs", interval=progress_interval) as progress,
    ):
        pending: deque = deque()
        for batch in _batches(doc.text for doc in docs if doc.text):
            pending.append(encoder.submit(tokenizer.encode_batch_fast, batch))
            if len(pending) > QUEUED:
                write(pending.popleft().result())
        while pending:
            write(pending.popleft().result())
        builder.finalize(output_prefix + ".idx")

    stats = {**read_stats.as_dict(), "tokens": tokens, "dtype": dtype.name, "vocab_size": tokenizer.get_vocab_size()}
    write_json(output_prefix + ".stats.json", stats)
    return stats


def merge_token_files(inputs: Iterable[str | Path], output_prefix: str | Path) -> dict:
    """Concatenate token files in order into one, identical to tokenizing their sources in one go."""
    inputs = [os.fspath(p) for p in inputs]
    if not inputs:
        raise PythiaReproError("merge-tokens: no input prefixes given")
    datasets = [IndexedDataset(p) for p in inputs]  # validates every input before writing anything
    dtype = datasets[0].dtype
    output_prefix = os.fspath(output_prefix)
    with (
        IndexedDatasetBuilder(output_prefix + ".bin", dtype) as builder,
        Progress("merge-tokens", total=len(inputs), unit="files") as progress,
    ):
        for prefix in inputs:
            builder.merge_file(prefix)
            progress.update()
        builder.finalize(output_prefix + ".idx")
    return {
        "inputs": len(inputs),
        "documents": sum(len(d) for d in datasets),
        "tokens": sum(d.num_tokens for d in datasets),
        "dtype": dtype.name,
    }
