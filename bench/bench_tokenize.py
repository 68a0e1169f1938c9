"""Tokenization throughput: ours vs the GPT-NeoX v1.0 preprocess_data.py approach vs raw `tokenizers`.

    .venv/bin/python bench/bench_tokenize.py [--mb 30] [--workers 2] [--rounds 3]

On one synthetic Pile-like corpus (generated here, deterministic, under bench/out/):
  (a) anchor: GPT-NeoX tools/preprocess_data.py as v1.0 runs it -- documents read and JSON-parsed
      in the main process, multiprocessing.Pool(workers).imap(encode, chunksize=25) with one
      `Tokenizer.encode` per document, EOD appended, every item written by the main process
      (np.array(ids, dtype) per document, sizes in a list, index written at the end);
      written here from the description, independent of our IndexedDatasetBuilder;
  (b) raw `tokenizers` encode_batch (and encode_batch_fast) on the same texts, already in
      memory, in 8 MB calls, no parsing, no id extraction, no I/O: the ceiling for a wrapper;
  (c) ours: pythia_repro.data.tokenize.tokenize_files, file to file.
Rounds are interleaved (a, b, c, a, b, c, ...); since other work may share the CPU, the best wall
time and the least CPU seconds (this process and its children) of each are reported, and every
round with the load average it started under.
(a) and (c) must write byte-identical .bin and .idx files.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import resource
import struct
import sys
import time
from pathlib import Path
from threading import Semaphore

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out" / "tokenize"
RESULTS = REPO / "bench" / "results" / "tokenize.md"
NEOX_TOKENIZER = REPO.parent / "shared" / "assets" / "20B_tokenizer.json"


# ----- corpus ---------------------------------------------------------------------------------
def make_corpus(path: Path, megabytes: float, tokenizer_path: Path, seed: int = 0) -> None:
    """Pile-like JSON lines: Zipf-distributed words of the tokenizer's own vocabulary, numbers,
    punctuation, paragraphs, some non-ASCII; document lengths log-normal (median ~2.4 kB)."""
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_file(str(tokenizer_path)).get_vocab()
    words = sorted(w[1:] for w in vocab if w.startswith("Ġ") and w[1:].isalpha())
    rng = np.random.default_rng(seed)
    words = [words[i] for i in rng.permutation(len(words))]
    p = 1.0 / np.arange(1, len(words) + 1) ** 1.1
    p /= p.sum()
    seps = np.array([" ", " ", " ", " ", " ", " ", ", ", ". ", ".\n\n", "; ", "? ", " (", ") ", "\n"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    target, total = int(megabytes * 1e6), 0
    with open(tmp, "w", encoding="utf-8") as fh:
        while total < target:
            n = max(1, int(rng.lognormal(6.0, 1.0)))
            tokens = np.array(words, dtype=object)[rng.choice(len(words), size=n, p=p)]
            numbers = rng.random(n) < 0.03
            tokens[numbers] = rng.integers(0, 100000, numbers.sum()).astype(str)
            text = "".join(np.char.add(tokens.astype(str), seps[rng.integers(0, len(seps), n)]))
            fh.write(json.dumps({"text": text, "meta": {"pile_set_name": "Synthetic"}}) + "\n")
            total += len(text.encode("utf-8"))
    os.replace(tmp, path)


def read_texts(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in fh]


# ----- (a) the GPT-NeoX v1.0 preprocess_data.py approach ----------------------------------------
class NeoxEncoder:
    """Like preprocess_data.py's Encoder: the tokenizer lives in each pool worker."""

    def __init__(self, tokenizer_path: str) -> None:
        self.tokenizer_path = tokenizer_path

    def initializer(self) -> None:
        from tokenizers import Tokenizer

        NeoxEncoder.tokenizer = Tokenizer.from_file(self.tokenizer_path)
        NeoxEncoder.eod = NeoxEncoder.tokenizer.token_to_id("<|endoftext|>")

    def encode(self, text: str):
        ids = NeoxEncoder.tokenizer.encode(text).ids  # HFTokenizer.tokenize
        doc_ids = [ids] if ids else []
        doc_ids[-1].append(NeoxEncoder.eod)  # --append-eod
        return {"text": doc_ids}, len(text)


def neox_preprocess(corpus: Path, tokenizer_path: Path, prefix: Path, workers: int) -> None:
    from tokenizers import Tokenizer

    vocab_size = Tokenizer.from_file(str(tokenizer_path)).get_vocab_size()
    dtype = np.uint16 if vocab_size < 65500 else np.int32  # __best_fitting_dtype
    semaphore = Semaphore(10000 + workers)

    def documents():  # yield_from_files: lm_dataformat, empty documents filtered out
        semaphore.acquire()
        with open(corpus, encoding="utf-8") as fh:
            for text in filter(lambda x: x, (json.loads(line)["text"] for line in fh)):
                semaphore.acquire()
                yield text

    encoder = NeoxEncoder(str(tokenizer_path))
    with multiprocessing.Pool(workers, initializer=encoder.initializer) as pool:
        sizes, doc_idx = [], [0]
        with open(f"{prefix}.bin", "wb") as data:
            for doc, _ in pool.imap(encoder.encode, documents(), chunksize=25):
                semaphore.release()
                for sentence in doc["text"]:  # MMapIndexedDatasetBuilder.add_item
                    array = np.array(sentence, dtype=dtype)
                    data.write(array.tobytes(order="C"))
                    sizes.append(array.size)
                doc_idx.append(len(sizes))  # end_document
    itemsize = np.dtype(dtype).itemsize
    pointers = np.concatenate([[0], np.cumsum(sizes[:-1], dtype=np.int64)]) * itemsize if sizes else []
    code = {np.uint16: 8, np.int32: 4}[dtype]
    with open(f"{prefix}.idx", "wb") as index:  # MMapIndexedDataset.Index.writer
        index.write(b"MMIDIDX\x00\x00" + struct.pack("<Q", 1) + struct.pack("<B", code))
        index.write(struct.pack("<Q", len(sizes)) + struct.pack("<Q", len(doc_idx)))
        index.write(np.array(sizes, dtype=np.int32).tobytes(order="C"))
        index.write(np.array(pointers, dtype=np.int64).tobytes(order="C"))
        index.write(np.array(doc_idx, dtype=np.int64).tobytes(order="C"))


# ----- measurement -------------------------------------------------------------------------------
def cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), cpu_seconds()
    fn()
    return time.perf_counter() - wall, cpu_seconds() - cpu


RAW_BATCH_CHARS = 8 << 20  # few, large calls: the pool's best case, whatever the memory


def raw_encode(tokenizer, texts: list[str], method: str) -> None:
    """One encode_batch call per RAW_BATCH_CHARS of text, results discarded."""
    encode = getattr(tokenizer, method)
    batch, chars = [], 0
    for text in texts:
        batch.append(text)
        chars += len(text)
        if chars >= RAW_BATCH_CHARS:
            encode(batch)
            batch, chars = [], 0
    if batch:
        encode(batch)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=30.0, help="corpus size in MB of text")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokenizer", type=Path, default=NEOX_TOKENIZER)
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.relative_to(REPO)}")
    args = parser.parse_args()
    if not args.tokenizer.is_file():
        sys.exit(f"GPT-NeoX-20B tokenizer not found at {args.tokenizer}; pass --tokenizer")

    # The thread pool of `tokenizers` is sized once per process, before its first parallel use.
    sys.path.insert(0, str(REPO / "src"))
    from pythia_repro.data import tokenize

    tokenize.set_workers(args.workers)
    from tokenizers import Tokenizer

    corpus = OUT / f"corpus_{args.mb:g}mb.jsonl"
    if not corpus.is_file():
        print(f"generating {corpus} ...", file=sys.stderr)
        make_corpus(corpus, args.mb, args.tokenizer)
    texts = read_texts(corpus)
    n_docs, n_bytes = len(texts), sum(len(t.encode("utf-8")) for t in texts)
    tokenizer = Tokenizer.from_file(str(args.tokenizer))

    runs = {
        "(a) GPT-NeoX preprocess_data.py approach": lambda: neox_preprocess(
            corpus, args.tokenizer, OUT / "neox", args.workers
        ),
        "(b) raw tokenizers encode_batch": lambda: raw_encode(tokenizer, texts, "encode_batch"),
        "(b') raw tokenizers encode_batch_fast": lambda: raw_encode(tokenizer, texts, "encode_batch_fast"),
        "(c) ours: tokenize_files": lambda: tokenize.tokenize_files(
            [corpus], args.tokenizer, OUT / "ours", progress_interval=3600
        ),
    }
    load_before = os.getloadavg()
    wall_s: dict[str, list[float]] = {name: [] for name in runs}
    cpu_s: dict[str, list[float]] = {name: [] for name in runs}
    round_rows = ["| round | run | load (1 min) | wall s | CPU s |", "|---:|---|---:|---:|---:|"]
    for round_ in range(1, args.rounds + 1):
        for name, fn in runs.items():
            load = os.getloadavg()[0]
            wall, cpu = timed(fn)
            wall_s[name].append(wall)
            cpu_s[name].append(cpu)
            round_rows.append(f"| {round_} | {name} | {load:.2f} | {wall:.2f} | {cpu:.2f} |")
            print(round_rows[-1], file=sys.stderr)
    load_after = os.getloadavg()

    for ext in (".bin", ".idx"):
        a, c = (OUT / f"neox{ext}").read_bytes(), (OUT / f"ours{ext}").read_bytes()
        assert a == c, f"(a) and (c) wrote different {ext} files"
    n_tokens = int(np.fromfile(OUT / "ours.bin", dtype=np.uint16).size)

    # Best wall and least CPU are taken separately: on a shared machine each is the round least
    # disturbed by others for that measure. CPU seconds are the work done, whatever the load.
    wall = {name: min(v) for name, v in wall_s.items()}
    cpu = {name: min(v) for name, v in cpu_s.items()}
    a, b = "(a) GPT-NeoX preprocess_data.py approach", "(b) raw tokenizers encode_batch"
    rows = [
        "| run | best wall s | docs/s | MB/s | tokens/s | speed vs (a) | vs (b) | least CPU s | work vs (a) | vs (b) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in runs:
        w, c = wall[name], cpu[name]
        rows.append(
            f"| {name} | {w:.2f} | {n_docs / w:,.0f} | {n_bytes / 1e6 / w:.2f} | {n_tokens / w:,.0f}"
            f" | {wall[a] / w:.2f}x | {wall[b] / w:.2f}x | {c:.2f} | {c / cpu[a]:.2f}x | {c / cpu[b]:.2f}x |"
        )
    import tokenizers

    report = "\n".join(
        [
            "# Tokenization throughput",
            "",
            f"`{' '.join(['bench/bench_tokenize.py'] + sys.argv[1:])}`, "
            f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}.",
            "",
            f"Machine: {len(os.sched_getaffinity(0))} cores ({cpu_model()}), workers = {args.workers}; "
            f"Python {platform.python_version()}, tokenizers {tokenizers.__version__}, numpy {np.__version__}. "
            f"Load average before/after: {load_before[0]:.2f} / {load_after[0]:.2f} "
            "(other jobs may share the CPU).",
            "",
            f"Corpus: synthetic Pile-like JSON lines, {n_docs:,} documents, {n_bytes / 1e6:.1f} MB of UTF-8 "
            f"text, {n_tokens:,} tokens with EOD (GPT-NeoX-20B tokenizer). {args.rounds} interleaved rounds;",
            "speed = best wall time, work = least CPU seconds (process and children), each over the rounds.",
            "(a) and (c) wrote byte-identical .bin and .idx files (asserted).",
            "",
            *rows,
            "",
            "Every round:",
            "",
            *round_rows,
            "",
        ]
    )
    print(report)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
