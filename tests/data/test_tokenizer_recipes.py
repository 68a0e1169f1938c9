"""LLaMA's and PaLM's tokenizer choices on our byte-level BPE: digits split, bytes for the unknown."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import yaml
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from pythia_repro.config import load_suite
from pythia_repro.data.tokenizer import SPECIAL_TOKENS, build_tokenizer, load_tokenizer, train_bpe

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
# Numbers recur often enough that a plain BPE learns merges across their digits.
TEXTS = [f"in {12345 if i % 2 else 2024} the cat sat on {i % 10} mats, {i} times" for i in range(400)]


def test_split_digits_gives_one_token_per_digit() -> None:
    tokenizer = train_bpe(TEXTS, 300, split_digits=True)
    encoding = tokenizer.encode("12345")
    assert encoding.tokens == ["1", "2", "3", "4", "5"]
    assert tokenizer.decode(encoding.ids) == "12345"
    # Inside text the space before a number becomes its own token, as LLaMA's "▁" does.
    assert tokenizer.encode("on 2024 mats").tokens == ["on", "Ġ", "2", "0", "2", "4", "Ġmats"]
    text = "in 12345 the cat sat on 2024 mats"
    assert tokenizer.decode(tokenizer.encode(text).ids) == text
    # The contrast: the same corpus without splitting learns " 2024" as one token.
    assert train_bpe(TEXTS, 300).encode("on 2024 mats").tokens == ["on", "Ġ2024", "Ġmats"]


def test_unseen_characters_fall_back_to_their_utf8_bytes() -> None:
    # What SentencePiece's byte_fallback gives LLaMA and PaLM holds for any byte-level BPE: no
    # merge covers characters the corpus never had, so each is its UTF-8 bytes, one token each.
    tokenizer = train_bpe(TEXTS, 300, split_digits=True)
    text = "中文𝔘é"  # 3 + 3 + 4 + 2 bytes
    encoding = tokenizer.encode(text)
    assert len(encoding.ids) == len(text.encode("utf-8")) == 12
    assert tokenizer.decode(encoding.ids) == text
    assert tokenizer.model.unk_token is None  # nothing to fall back to: no unknown token exists


def gpt_neox_style_bpe(texts: list[str], vocab_size: int) -> Tokenizer:
    """The tokenizer as built before split_digits existed, restated here to pin it."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def test_default_tokenizer_is_unchanged(tmp_path: Path, write_shard) -> None:
    shard = write_shard(tmp_path / "s.jsonl", TEXTS)
    section = dataclasses.asdict(load_suite(yaml.safe_load(TINY.read_text())).tokenizer)
    assert section["split_digits"] is False  # the schema's default
    section["vocab_size"] = 300
    build_tokenizer(section, [shard], tmp_path / "suite.json")
    expected = gpt_neox_style_bpe(TEXTS, 300).to_str(pretty=True)
    assert (tmp_path / "suite.json").read_text() == expected
    assert json.loads(expected)["pre_tokenizer"]["type"] == "ByteLevel"


def test_suite_option_reaches_the_trained_tokenizer(tmp_path: Path, write_shard) -> None:
    shard = write_shard(tmp_path / "s.jsonl", TEXTS)
    cfg = yaml.safe_load(TINY.read_text())
    cfg["tokenizer"].update(split_digits=True, vocab_size=300)
    build_tokenizer(dataclasses.asdict(load_suite(cfg).tokenizer), [shard], tmp_path / "t.json")
    tokenizer = load_tokenizer(tmp_path / "t.json")
    assert len(tokenizer.encode("12345").ids) == 5
    cfg["tokenizer"]["vocab_size"] = 256000  # PaLM's: allowed, token files become int32
    assert load_suite(cfg).tokenizer.vocab_size == 256000
