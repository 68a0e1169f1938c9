"""Corpus bytes: invalid UTF-8 is named by file, line and byte offset (or skipped and counted),
and an empty shard (or one of only empty documents) is a warning in the log and in the stats."""

from __future__ import annotations

import gzip
import json

import pytest
import zstandard

from pythia_repro.data.corpus import CorpusError, ReadPolicy, ReadStats, iter_documents

GOOD = [json.dumps({"text": "first"}).encode(), json.dumps({"text": "second é"}).encode()]
BAD = b'{"text": "caf\xe9 latin-1"}'  # a Latin-1 byte in a UTF-8 file


def _shard(path, lines: list[bytes]):
    data = b"".join(line + b"\n" for line in lines)
    if path.suffix == ".zst":
        data = zstandard.ZstdCompressor().compress(data)
    elif path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".jsonl.zst"])
def test_invalid_utf8_names_file_line_and_offset(tmp_path, suffix):
    path = _shard(tmp_path / f"s{suffix}", [GOOD[0], BAD, GOOD[1]])
    offset = len(GOOD[0]) + 1 + BAD.index(b"\xe9")
    with pytest.raises(CorpusError) as err:
        list(iter_documents([path]))
    message = str(err.value)
    assert message.startswith(f"{path}:2: invalid UTF-8 at byte offset {offset:,} ")
    assert "bytes e9" in message


def test_invalid_utf8_is_skipped_and_counted(tmp_path):
    path = _shard(tmp_path / "s.jsonl.zst", [GOOD[0], BAD, GOOD[1]])
    stats = ReadStats()
    docs = list(iter_documents([path], ReadPolicy(on_malformed="skip"), stats))
    assert [d.text for d in docs] == ["first", "second é"] and [d.line for d in docs] == [1, 3]
    assert stats.malformed == 1 and "s.jsonl.zst:2: invalid UTF-8" in stats.malformed_examples[0]


def test_empty_shards_warn_and_count(tmp_path, capsys):
    empty = _shard(tmp_path / "empty.jsonl.zst", [])
    blanks = _shard(tmp_path / "blank.jsonl", [json.dumps({"text": ""}).encode()] * 3)
    full = _shard(tmp_path / "full.jsonl", GOOD)
    stats = ReadStats()
    docs = list(iter_documents([empty, full, blanks], stats=stats))
    assert len(docs) == 5
    report = stats.as_dict()
    assert report["empty_shards"] == 2
    assert report["empty_shard_examples"] == [f"{empty}: no documents", f"{blanks}: only empty documents (3)"]
    err = capsys.readouterr().err
    assert f"[corpus] warning: {empty}: no documents" in err and "full.jsonl" not in err

    with pytest.raises(CorpusError, match=rf"{empty.name}: no documents"):
        list(iter_documents([empty], ReadPolicy(on_empty_shard="error")))
    with pytest.raises(ValueError, match="on_empty_shard must be one of"):
        ReadPolicy(on_empty_shard="ignore")


def _word_tokenizer(path):
    """A three-entry tokenizer.json: enough for tokenize to run."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"<|endoftext|>": 0, "<|padding|>": 1, "Ġfirst": 2}, unk_token="<|padding|>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.save(str(path))
    return path


def test_tokenize_stats_record_empty_shards(tmp_path, capsys):
    from pythia_repro.data.tokenize import tokenize_files

    shard = _shard(tmp_path / "blank.jsonl", [json.dumps({"text": ""}).encode()])
    stats = tokenize_files([shard], _word_tokenizer(tmp_path / "tok.json"), tmp_path / "out", progress_interval=1e9)
    assert stats["empty_shards"] == 1 and stats["documents"] == 1
    assert json.loads((tmp_path / "out.stats.json").read_text())["empty_shards"] == 1
    assert "warning" in capsys.readouterr().err


def test_corpus_on_empty_shard_error_reaches_the_verbs(tmp_path, repo_root, capsys):
    """`corpus.on_empty_shard: error` in the suite config: the first job to read the shard fails
    with one line naming it (dedup reads the config; tokenize gets the rule's flag)."""
    import yaml

    from pythia_repro.cli import main

    cfg = yaml.safe_load((repo_root / "config" / "config.yaml").read_text())
    cfg["corpus"]["on_empty_shard"] = "error"
    config = tmp_path / "suite.yaml"
    config.write_text(yaml.safe_dump(cfg))
    empty = _shard(tmp_path / "empty.jsonl.zst", [])
    code = main(["dedup-signatures", "--config", str(config), "--input", str(empty), "--shard-index", "0",
                 "--output", str(tmp_path / "sig.npz")])
    assert code == 2 and f"{empty}: no documents" in capsys.readouterr().err
    assert not (tmp_path / "sig.npz").exists()
    tokenizer = _word_tokenizer(tmp_path / "tok.json")
    code = main(["tokenize", "--input", str(empty), "--tokenizer", str(tokenizer),
                 "--output-prefix", str(tmp_path / "t"), "--on-empty-shard", "error"])
    assert code == 2 and f"{empty}: no documents" in capsys.readouterr().err
    assert not list(tmp_path.glob("t.*"))
