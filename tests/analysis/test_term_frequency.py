"""Term counting as Pythia's run_freq_count.py: hand-counted cases, fast == reference, parts and merge."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from pythia_repro.analysis.term_frequency import (
    count_range,
    count_samples,
    count_texts,
    count_texts_reference,
    decode_rows,
    merge_parts,
    read_counts,
    read_part,
    write_counts,
    write_part,
)


def _both(text: str, **kw) -> Counter:
    ref = count_texts_reference([text], **kw)
    assert count_texts([text], **kw) == ref
    return ref


@pytest.mark.parametrize(
    "text, expected",
    [
        # one window, one word between: each number once, the pair once
        ("a 12 apples 34 b", {"12": 1, "34": 1, "12-34": 1}),
        # overlapping windows: " 1 x 2 y 3" (3 words) and " 2 y 3" (1 word); every pair of a window counts
        ("1 x 2 y 3", {"1": 1, "2": 2, "3": 2, "1-2": 1, "1-3": 1, "2-3": 2}),
        # pairs sort numerically, not as strings
        ("12345 a 7", {"7": 1, "12345": 1, "7-12345": 1}),
        # a 6-digit first number starts no window; a 6-digit last one is cut to its first 5 digits
        ("123456 a 7", {}),
        ("7 a 123456", {"7": 1, "12345": 1, "7-12345": 1}),
        # digits inside a middle word are numbers of the window too
        ("3 ab1234567cd 9", {"3": 1, "9": 1, "12345": 1, "67": 1, "3-9": 1, "3-12345": 1, "3-67": 1,
                             "9-12345": 1, "9-67": 1, "67-12345": 1}),
        # punctuation runs are words; non-ASCII punctuation is not
        ("3 (a), 4", {"3": 1, "4": 1, "3-4": 1}),
        ("3 — 4", {}),
        # 3 words between: a window; 4 words: none; 0 words: none
        ("1 a b c 2", {"1": 1, "2": 1, "1-2": 1}),
        ("1 a b c d 2", {}),
        ("1 2", {}),
        # newlines are whitespace between words, but a number must follow a literal space
        ("5 apples\n\n6", {"5": 1, "6": 1, "5-6": 1}),
        ("x\n5 a 6", {}),
        # unicode digits and whitespace as \d and \s match them; keys are the int values
        ("٣ a ٤", {"3": 1, "4": 1, "3-4": 1}),
        ("3 a\u00a04", {"3": 1, "4": 1, "3-4": 1}),
        ("3\u00a0a 4", {}),
        # leading zeros go through int
        ("007 a 7", {"7": 2, "7-7": 1}),
    ],
)
def test_hand_counted_windows(text, expected):
    assert _both(text, time_units=False) == Counter(expected)


def test_time_unit_keys():
    # " 5 hours 6": the number window, " 5 hour" (unit 0 words away); "hours " is not " hour "
    assert _both("5 hours 6") == Counter({"5": 1, "6": 1, "5-6": 1, "5-hour": 1})
    # " day 3" (unit then number); "today" holds "day" for every number of a window
    assert _both("a day 3") == Counter({"3-day": 1})
    assert _both("4 today x week") == Counter({"4-day": 1, "4-week": 1})


def _random_text(rng: random.Random) -> str:
    pieces = ["1", "12", "123", "1234", "12345", "123456", "7", "0", "٣", "day", "hours", "week", "a", "ab",
              "(x),", "--", "...", "—", "_", "x1y", "year"]
    seps = [" ", " ", " ", "  ", "\n", "\n\n", "\t", "\u00a0", "", ",", ". "]
    return "".join(rng.choice(pieces) + rng.choice(seps) for _ in range(rng.randint(1, 60)))


def test_fast_equals_reference_on_random_and_corpus_text():
    from pythia_repro.data.synthetic import SyntheticSpec, generate

    rng = random.Random(0)
    texts = [_random_text(rng) for _ in range(3000)]
    corpus = generate(SyntheticSpec(num_shards=1, docs_per_shard=300, heldout_docs=0, exact_duplicate_rate=0.0,
                                    near_duplicate_rate=0.0, seed=5))
    texts += [d.text for d in corpus.shards[0]]
    ref = count_texts_reference(texts)
    assert sum(ref.values()) > 10_000 and any(k.endswith("-day") for k in ref)
    assert count_texts(texts) == ref
    assert count_texts(texts, time_units=False) == count_texts_reference(texts, time_units=False)


@pytest.fixture(scope="module")
def bpe():
    from pythia_repro.data.synthetic import SyntheticSpec, generate
    from pythia_repro.data.tokenizer import train_bpe

    corpus = generate(SyntheticSpec(num_shards=1, docs_per_shard=200, heldout_docs=0, exact_duplicate_rate=0.0,
                                    near_duplicate_rate=0.0, seed=2))
    texts = [d.text for d in corpus.shards[0]]
    return train_bpe(texts, vocab_size=600), texts


def _rows(tokenizer, texts, width=257):
    ids = []
    for enc in tokenizer.encode_batch(texts):
        ids += [*enc.ids, 0]
    n = len(ids) // width
    return np.asarray(ids[: n * width], dtype=np.int64).reshape(n, width)


def _transformers_reference(tokenizer_file, rows):
    """Pythia's decode: transformers batch_decode with the 4.x default clean-up of tokenization spaces."""
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_file), clean_up_tokenization_spaces=True,
                                 clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output=True)
    return count_texts_reference(hf.batch_decode(rows))


def test_count_samples_on_trained_bpe(bpe, tmp_path):
    tokenizer, texts = bpe
    rows = _rows(tokenizer, texts)
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    counts = count_samples(rows, tokenizer)
    assert sum(counts.values()) > 100
    assert counts == _transformers_reference(path, rows)
    # the numpy byte table decodes exactly as the Rust decoder, invalid UTF-8 included
    rng = np.random.default_rng(0)
    random_ids = rng.integers(0, tokenizer.get_vocab_size(), (50, 300))
    assert decode_rows(random_ids, tokenizer, clean_up=False) == tokenizer.decode_batch(
        random_ids.tolist(), skip_special_tokens=False)


def test_count_samples_on_neox_tokenizer(neox_tokenizer_path, bpe):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(neox_tokenizer_path))
    rows = _rows(tokenizer, bpe[1] + ["x 12 , 3 y 5 's 6 . 7"], width=513)
    assert count_samples(rows, tokenizer) == _transformers_reference(neox_tokenizer_path, rows)
    rng = np.random.default_rng(1)
    random_ids = rng.integers(0, tokenizer.get_vocab_size(), (40, 400))
    random_ids[:, ::23] = rng.integers(50254, tokenizer.get_vocab_size(), (40, 18))  # whitespace added tokens
    random_ids[:, ::31] = 0
    assert decode_rows(random_ids, tokenizer, clean_up=False) == tokenizer.decode_batch(
        random_ids.tolist(), skip_special_tokens=False)


def _preshuffled(tmp_path, rows):
    from pythia_repro.data.batch import PreshuffledOrder
    from pythia_repro.data.indexed import IndexedDatasetBuilder

    prefix = tmp_path / "samples"
    builder = IndexedDatasetBuilder(f"{prefix}.bin", np.uint16)
    for row in rows:
        builder.add_document(row)
    builder.finalize(f"{prefix}.idx")
    return PreshuffledOrder(prefix, batch_schedule=4)


def test_count_range_and_incremental_merge_equal_counting_from_scratch(bpe, tmp_path, capsys):
    tokenizer, texts = bpe
    rows = _rows(tokenizer, texts * 2)[:40]  # 10 steps of 4 samples
    order = _preshuffled(tmp_path, rows)
    assert count_range(order, tokenizer, 0, 40, batch=7) == count_samples(rows, tokenizer)
    assert "tokens/s" in capsys.readouterr().err
    assert count_range(order, tokenizer, 8, 36, batch=5, workers=2) == count_samples(rows[8:36], tokenizer)

    checkpoints = [0, 3, 4, 10]
    bounds = [(0, 3), (3, 4), (4, 7), (7, 10)]  # finer than the checkpoints between 4 and 10
    parts = []
    for a, b in bounds:
        path = tmp_path / f"part-{a:03d}-{b:03d}.parquet"
        write_part(path, count_range(order, tokenizer, a * 4, b * 4), a, b)
        parts.append(path)
    frame, a, b = read_part(parts[1])
    assert (a, b) == (3, 4) and frame["count"].dtype == np.int64
    merged = merge_parts(reversed(parts), checkpoints)
    out = tmp_path / "counts.parquet"
    write_counts(out, merged)
    table = read_counts(out)
    assert table.attrs["steps"] == checkpoints
    assert list(table.columns) == ["step", "term", "count"] and table["step"].dtype == np.int64
    for step in checkpoints:
        at = table[table["step"] == step]
        assert dict(zip(at["term"], at["count"], strict=True)) == dict(count_samples(rows[: step * 4], tokenizer))
    only = merge_parts(parts, [10], terms=["12", "1-2", "nope"])
    assert set(only["term"]) <= {"12", "1-2"}


def test_merge_rejects_gaps_overlaps_and_misaligned_checkpoints(tmp_path):
    def part(a, b):
        path = tmp_path / f"p{a}-{b}.parquet"
        write_part(path, {"1": 1}, a, b)
        return path

    with pytest.raises(ValueError, match=r"p3-5\.parquet.*gap"):
        merge_parts([part(0, 2), part(3, 5)], [2, 5])
    with pytest.raises(ValueError, match=r"p1-4\.parquet.*overlapping"):
        merge_parts([part(0, 2), part(1, 4)], [2, 4])
    with pytest.raises(ValueError, match=r"gap"):
        merge_parts([part(2, 4)], [4])
    with pytest.raises(ValueError, match=r"\[3\].*spans"):
        merge_parts([part(0, 2), part(2, 4)], [3, 4])
    with pytest.raises(ValueError, match=r"\[6\].*end at step 4"):
        merge_parts([part(0, 2), part(2, 4)], [4, 6])
    plain = tmp_path / "plain.parquet"
    pd.DataFrame({"term": ["1"], "count": [1]}).to_parquet(plain)
    with pytest.raises(ValueError, match="plain.parquet: not a term-count part"):
        merge_parts([plain], [1])
    with pytest.raises(ValueError, match="bad step range"):
        write_part(tmp_path / "x.parquet", {}, 3, 3)


def test_prefilter_character_classes_match_python():
    import sys

    from pythia_repro.analysis.term_frequency import _DIGIT_START, _PAD, _SPACE_CHARS, _whitespace

    chars = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c < 0xE000]
    assert sorted(_SPACE_CHARS) == [c for c in chars if c.isspace()]
    # every Unicode decimal digit (what \d matches) starts with a byte the prefilter takes as a digit
    assert all(_DIGIT_START[c.encode()[0]] for c in chars if c.isdecimal())
    text = "".join(chars[:0x3100])
    data = np.frombuffer((text + "\x00" * _PAD).encode(), dtype=np.uint8)
    ws = _whitespace(data)
    expected = np.concatenate([np.full(len(c.encode()), c.isspace()) for c in text] + [np.zeros(_PAD, bool)])
    assert (ws == expected).all()


def _rich_text(rng: random.Random) -> str:
    pieces = ["1", "12", "123", "12345", "123456", "0", "٣", "१२", "１", "𝟙", "day", "days", "today", "hours",
              "decade", "decades", "minute", "month", "week", "year", "a", "ab", "(x),", "—", "é", "x1y", "'", "n't",
              "'s", ".", ",", "?", "!", "\x00", "\ufffd", "日本", "word" * 5]
    seps = [" ", " ", " ", "  ", "\n", "\t", "\u00a0", "\u2003", "\u3000", "\x1c", "\x85", " \u00a0 ", "", ",", ". "]
    return "".join(rng.choice(pieces) + rng.choice(seps) for _ in range(rng.randint(1, 80)))


def test_fast_equals_reference_on_unicode_spaces_digits_and_units():
    rng = random.Random(1)
    texts = [_rich_text(rng) for _ in range(2000)] + ["", " ", "\x00", "5", "5 a", "x" * 100 + " 1 a 2"]
    ref = count_texts_reference(texts)
    assert sum(ref.values()) > 5_000 and any(k.endswith("-decade") for k in ref)
    assert count_texts(texts) == ref
    assert count_texts(texts, time_units=False) == count_texts_reference(texts, time_units=False)
    assert count_texts(["1 a \ud800 2"]) == count_texts_reference(["1 a \ud800 2"])  # a lone surrogate
    # texts one at a time: windows at the very start and end of a text
    for text in texts[:300]:
        assert count_texts([text]) == count_texts_reference([text])


def test_byte_clean_up_equals_transformers_clean_up():
    from pythia_repro.analysis.term_frequency import _PAD, _clean_up_bytes, clean_up_tokenization

    rng = random.Random(2)
    pieces = [" ", "  ", "'", " '", "' ", "n't", " n't", "s", "m", "ve", "re", "t", ".", ",", "?", "!", "n", "a",
              "é", "\u00a0", "5"]
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 40))) for _ in range(3000)]
    texts += [" ' ' ' s", "  ' s", " ' n't", " ' ' 've", ". x", " . ", "' ' '", " 're ' m"]
    data = b"".join(b"\x00\x01" + t.encode() for t in texts) + b"\x00" * _PAD
    starts = np.cumsum([0] + [2 + len(t.encode()) for t in texts[:-1]])
    cleaned, marks = _clean_up_bytes(np.frombuffer(data, dtype=np.uint8).copy(), starts + 1)
    out = cleaned.tobytes()
    assert (cleaned[marks] == 1).all()
    bounds = [*marks.tolist(), len(out) - _PAD + 1]
    got = [out[a + 1 : b - 1].decode() for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    assert got == [clean_up_tokenization(t) for t in texts]


def test_byte_table_64_bit_index_path(bpe, monkeypatch):
    from pythia_repro.analysis.term_frequency import _byte_table

    tokenizer, texts = bpe
    rows = _rows(tokenizer, texts)
    narrow = decode_rows(rows, tokenizer), count_samples(rows, tokenizer)
    monkeypatch.setattr(_byte_table(tokenizer), "max_length", 2**31)  # as if a batch could overflow int32
    assert (decode_rows(rows, tokenizer), count_samples(rows, tokenizer)) == narrow
