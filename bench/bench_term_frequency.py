"""Term-frequency counting throughput: ours vs Pythia's run_freq_count.py approach, same samples and cores.

Pythia's approach: .npy batches of training samples, each decoded with transformers' `batch_decode`
(a PreTrainedTokenizerFast from tokenizer.json, with the clean-up of tokenization spaces its 4.x
default applied) and scanned with the lookahead regexes at every position, in a `multiprocessing`
pool. Ours: `count_range` over a pre-shuffled token file (numpy byte-table decode and clean-up,
byte-level prefilter, literal-prefix scans). Both count the same keys (numbers, pairs, number-time
unit); the counts are asserted equal.

    .venv/bin/python bench/bench_term_frequency.py [--samples 4096] [--workers 2]

Writes bench/results/term_frequency.md.
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
NEOX = REPO.parent / "shared" / "assets" / "20B_tokenizer.json"
PILE_TOKENS = 300e9

_hf = None


def _init_pythia(tokenizer_file: str) -> None:
    global _hf
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from transformers import PreTrainedTokenizerFast

    _hf = PreTrainedTokenizerFast(tokenizer_file=tokenizer_file, clean_up_tokenization_spaces=True,
                                  clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output=True)


def _pythia_file(path: str) -> Counter:
    from pythia_repro.analysis.term_frequency import count_texts_reference

    return count_texts_reference(_hf.batch_decode(np.load(path)))


def _tokenizer_file(tmp: Path, texts: list[str]) -> Path:
    if NEOX.is_file():
        return NEOX
    from pythia_repro.data.tokenizer import train_bpe

    path = tmp / "tokenizer.json"
    train_bpe(texts, vocab_size=8192).save(str(path))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()

    from tokenizers import Tokenizer

    from pythia_repro.analysis.term_frequency import count_range
    from pythia_repro.data.batch import PreshuffledOrder
    from pythia_repro.data.indexed import IndexedDatasetBuilder
    from pythia_repro.data.synthetic import SyntheticSpec, generate

    width = 2049
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        spec = SyntheticSpec(num_shards=1, docs_per_shard=20_000, heldout_docs=0, exact_duplicate_rate=0.0,
                             near_duplicate_rate=0.0, seed=11)
        texts = [d.text for d in generate(spec).shards[0]]
        tokenizer_file = _tokenizer_file(tmp, texts)
        tokenizer = Tokenizer.from_file(str(tokenizer_file))
        ids: list[int] = []
        for enc in tokenizer.encode_batch(texts):
            ids += [*enc.ids, 0]  # EOD between documents, as the packed training stream
        reps = -(-args.samples * width // len(ids))
        stream = np.tile(np.asarray(ids, dtype=np.uint16), reps)[: args.samples * width]
        rows = stream.reshape(args.samples, width)
        prefix = tmp / "samples"
        builder = IndexedDatasetBuilder(f"{prefix}.bin", np.uint16)
        for row in rows:
            builder.add_document(row)
        builder.finalize(f"{prefix}.idx")
        order = PreshuffledOrder(prefix, batch_schedule=args.batch)
        files = []
        for i, a in enumerate(range(0, args.samples, args.batch)):
            files.append(str(tmp / f"batch{i:05d}.npy"))
            np.save(files[-1], rows[a : a + args.batch].astype(np.int64))

        results = {}
        for workers in sorted({1, args.workers}):
            start = time.perf_counter()
            ctx = mp.get_context("spawn")
            with ctx.Pool(workers, initializer=_init_pythia, initargs=(str(tokenizer_file),)) as pool:
                pythia = Counter()
                for c in pool.imap_unordered(_pythia_file, files):
                    pythia.update(c)
            t_pythia = time.perf_counter() - start
            start = time.perf_counter()
            ours = count_range(order, tokenizer, 0, args.samples, batch=args.batch, workers=workers, interval=1e9)
            t_ours = time.perf_counter() - start
            assert ours == pythia, "counts differ"
            results[workers] = (t_pythia, t_ours, sum(ours.values()))

    tokens = args.samples * width
    lines = [
        "# Term-frequency counting: ours vs Pythia's run_freq_count.py approach",
        "",
        f"- date: {datetime.date.today().isoformat()}; machine: {platform.node()} "
        f"({platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, shared); "
        f"Python {platform.python_version()}",
        f"- tokenizer: {'GPT-NeoX-20B' if tokenizer_file == NEOX else 'trained byte-level BPE'}; samples: "
        f"{args.samples:,} x {width} tokens ({tokens:,} tokens) of synthetic-corpus documents joined by EOD",
        "- both count numbers, sorted pairs and number-time unit keys; identical counts asserted "
        f"({results[args.workers][2]:,} keys counted)",
        "- Pythia's approach: .npy batches, transformers `batch_decode` (clean-up on, as transformers 4.x), "
        "`re` lookahead at every position, `multiprocessing` pool; ours: `count_range` (pool of the same size; "
        "numpy byte-table decode and clean-up, byte-level prefilter, literal-prefix scans)",
        "",
        "| workers | Pythia's approach tokens/s | ours tokens/s | speed-up | Pile (300B tokens) CPU-hours, Pythia's "
        "| Pile CPU-hours, ours |",
        "|---|---|---|---|---|---|",
    ]
    for workers, (t_pythia, t_ours, _) in results.items():
        rp, ro = tokens / t_pythia, tokens / t_ours
        # CPU-hours at the measured rate per core
        hp, ho = PILE_TOKENS / (rp / workers) / 3600, PILE_TOKENS / (ro / workers) / 3600
        lines.append(f"| {workers} | {rp:,.0f} | {ro:,.0f} | {t_pythia / t_ours:.2f}x | {hp:,.0f} | {ho:,.0f} |")
    lines += ["", "Rates include pool start-up (spawned workers import transformers / tokenizers); with a shared "
              "2-core machine, multi-worker rates are noisy."]
    text = "\n".join(lines) + "\n"
    print(text)
    out = REPO / "bench" / "results" / "term_frequency.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    from pythia_repro.atomic import write_text

    write_text(out, text)


if __name__ == "__main__":
    main()
