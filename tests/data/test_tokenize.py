"""Tokenizing shards into GPT-NeoX token files: EOD, empty documents, errors, shard merge, CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from pythia_repro import cli
from pythia_repro.data import tokenize
from pythia_repro.data.corpus import CorpusError, ReadPolicy
from pythia_repro.data.indexed import IndexedDataset
from pythia_repro.data.tokenizer import load_tokenizer, train_bpe
from pythia_repro.errors import PythiaReproError

TEXTS = [
    "Hello, I am a document.",
    "",  # empty: counted and dropped, as GPT-NeoX does
    "Zwei Wörter — und ein Emoji 🙂\n\nnew paragraph",
    "  leading spaces and <|endoftext|> inside the text",
    "x" * 5000,
]



@pytest.fixture(scope="module")
def bpe_path(tmp_path_factory):
    """A small trained tokenizer, so these tests run without the GPT-NeoX-20B file too."""
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    path.write_text(train_bpe(TEXTS * 20 + [" ".join(map(str, range(300)))], 400).to_str())
    return path


def expected_items(tokenizer_path, texts):
    """GPT-NeoX preprocess_data.py --append-eod, one non-empty document at a time: ids + [EOD]."""
    tokenizer = load_tokenizer(tokenizer_path)
    return [tokenizer.encode(text).ids + [0] for text in texts if text]


def read_items(prefix):
    ds = IndexedDataset(prefix)
    return [ds[i].tolist() for i in range(len(ds))]


def test_documents_with_eod(tmp_path, neox_tokenizer_path, write_shard):
    shard = write_shard(tmp_path / "s.jsonl", TEXTS)
    stats = tokenize.tokenize_files([shard], neox_tokenizer_path, tmp_path / "out" / "t")
    assert read_items(tmp_path / "out" / "t") == expected_items(neox_tokenizer_path, TEXTS)
    ds = IndexedDataset(tmp_path / "out" / "t")
    assert ds.dtype == np.uint16
    assert ds[0].tolist() == [12092, 13, 309, 717, 247, 3389, 15, 0]
    assert ds[1].tolist()[:2] == [59, 26981]  # "Zwei": the empty document left no item
    assert len(ds) == len(TEXTS) - 1 and ds.doc_idx.tolist() == list(range(len(TEXTS)))
    assert stats["documents"] == 5 and stats["empty"] == 1
    assert stats["tokens"] == int(ds.sizes.sum()) == ds.num_tokens
    assert json.loads((tmp_path / "out" / "t.stats.json").read_text()) == stats


def test_many_batches_keep_order(tmp_path, bpe_path, monkeypatch, write_shard):
    monkeypatch.setattr(tokenize, "BATCH_DOCS", 3)
    texts = [f"document number {i} " * (i % 7) for i in range(100)]
    shard = write_shard(tmp_path / "s.jsonl.gz", texts)
    stats = tokenize.tokenize_files([shard], bpe_path, tmp_path / "t")
    assert read_items(tmp_path / "t") == expected_items(bpe_path, texts)
    assert stats["empty"] == len([t for t in texts if not t])


def test_malformed_line_names_file_and_line(tmp_path, bpe_path, write_shard):
    shard = write_shard(tmp_path / "s.jsonl", TEXTS, extra_lines=['{"text": 3}', '{"text": "after"}'])
    with pytest.raises(CorpusError, match=r"s\.jsonl:6"):
        tokenize.tokenize_files([shard], bpe_path, tmp_path / "out" / "t")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []  # nothing published, no temporaries

    stats = tokenize.tokenize_files([shard], bpe_path, tmp_path / "out" / "t", ReadPolicy(on_malformed="skip"))
    assert stats["malformed_skipped"] == 1 and stats["documents"] == 6
    assert read_items(tmp_path / "out" / "t") == expected_items(bpe_path, TEXTS + ["after"])


def test_shards_merged_equal_one_go(tmp_path, bpe_path, write_shard):
    shards = [
        write_shard(tmp_path / "00.jsonl.zst", TEXTS[:2]),
        write_shard(tmp_path / "01.jsonl", TEXTS[2:3]),
        write_shard(tmp_path / "02.jsonl.zst", TEXTS[3:]),
    ]
    for i, shard in enumerate(shards):
        tokenize.tokenize_files([shard], bpe_path, tmp_path / f"tok{i}")
    stats = tokenize.merge_token_files([tmp_path / f"tok{i}" for i in range(3)], tmp_path / "merged")
    tokenize.tokenize_files(shards, bpe_path, tmp_path / "whole")
    for ext in (".bin", ".idx"):
        assert (tmp_path / f"merged{ext}").read_bytes() == (tmp_path / f"whole{ext}").read_bytes()
    assert stats["documents"] == len(TEXTS) - 1  # items: the empty document was dropped


def test_merge_refuses_missing_input(tmp_path, bpe_path, write_shard):
    tokenize.tokenize_files([write_shard(tmp_path / "s.jsonl", TEXTS)], bpe_path, tmp_path / "a")
    with pytest.raises(PythiaReproError, match=r"nope\.idx"):
        tokenize.merge_token_files([tmp_path / "a", tmp_path / "nope"], tmp_path / "m")
    assert not (tmp_path / "m.bin").exists()


def test_cli_verbs(tmp_path, bpe_path, capsys, write_shard):
    a = write_shard(tmp_path / "a.jsonl", TEXTS[:3])
    b = write_shard(tmp_path / "b.jsonl", TEXTS[3:])
    for name, shard in (("a", a), ("b", b)):
        rc = cli.main(
            [
                "tokenize",
                "--input",
                str(shard),
                "--tokenizer",
                str(bpe_path),
                "--output-prefix",
                str(tmp_path / name),
                "--workers",
                "1",
            ]
        )
        assert rc == 0
    rc = cli.main(
        ["merge-tokens", "--inputs", str(tmp_path / "a"), str(tmp_path / "b"), "--output-prefix", str(tmp_path / "m")]
    )
    assert rc == 0
    assert read_items(tmp_path / "m") == expected_items(bpe_path, TEXTS)
    err = capsys.readouterr().err
    assert "[tokenize]" in err and '"empty": 1' in err and "merge-tokens: wrote" in err


def test_cli_malformed_exit_code(tmp_path, bpe_path, capsys, write_shard):
    shard = write_shard(tmp_path / "s.jsonl", [], extra_lines=["not json"])
    rc = cli.main(["tokenize", "--input", str(shard), "--tokenizer", str(bpe_path),
                   "--output-prefix", str(tmp_path / "t")])
    assert rc == 2
    assert "s.jsonl:1: malformed JSON" in capsys.readouterr().err


def test_parallel_workers_same_bytes(tmp_path, bpe_path, write_shard):
    """A fresh process with two BPE threads writes the same file as one thread."""
    texts = [f"text {i} " * (1 + i % 13) for i in range(2000)]
    shard = write_shard(tmp_path / "s.jsonl", texts)
    for workers in (1, 2):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pythia_repro.cli",
                "tokenize",
                "--input",
                str(shard),
                "--tokenizer",
                str(bpe_path),
                "--output-prefix",
                str(tmp_path / f"w{workers}"),
                "--workers",
                str(workers),
            ],
            check=True,
            capture_output=True,
        )
    for ext in (".bin", ".idx"):
        assert (tmp_path / f"w1{ext}").read_bytes() == (tmp_path / f"w2{ext}").read_bytes()
    assert read_items(tmp_path / "w1") == expected_items(bpe_path, texts)


def test_killed_run_leaves_nothing_published_and_rerun_clears_its_temporary(tmp_path, bpe_path, write_shard):
    """SIGKILL mid-write: no .bin/.idx under the final names; the rerun removes the dead run's
    temporary .bin (tens of GB at Pile scale) and writes the same bytes as an undisturbed run."""
    import os
    import signal
    import time

    texts = [f"document {i} " + "words and more words " * (50 + i % 100) for i in range(2000)]
    shard = write_shard(tmp_path / "s.jsonl", texts)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "pythia_repro.cli", "tokenize", "--input", shard,
               "--tokenizer", str(bpe_path), "--output-prefix", str(out / "t")]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (out.is_dir() and list(out.glob(".t.bin.*.tmp"))):
        assert proc.poll() is None and time.monotonic() < deadline, "tokenize ended before it was killed"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    leftover = list(out.glob(".t.bin.*.tmp"))
    assert leftover and not (out / "t.bin").exists() and not (out / "t.idx").exists()

    subprocess.run(command, check=True, capture_output=True)
    assert not list(out.glob(".*.tmp")), "the killed run's temporary is still there"
    tokenize.tokenize_files([shard], bpe_path, tmp_path / "undisturbed" / "t")
    for ext in (".bin", ".idx"):
        assert (out / f"t{ext}").read_bytes() == (tmp_path / "undisturbed" / f"t{ext}").read_bytes()
