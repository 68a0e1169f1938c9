"""Term-frequency counts over the training data, exactly as Pythia's term-frequency case study.

Pythia (`case-studies/term_frequency/run_freq_count.py` in EleutherAI/pythia) decodes every
training sample (its seq_length + 1 tokens) with transformers' `batch_decode`, prefixes a space
and finds every (overlapping) match of three lookahead patterns:

- the number window ` N1 w1 [w2 [w3]] N2`: two numbers of 1-5 digits with 1-3 "words" (runs of
  word characters and ASCII punctuation, each followed by whitespace) between them. Every number
  (`\\d{1,5}` run) inside a window counts once as key "7", and every pair of them, sorted
  numerically, counts once as key "3-12" (all pairs: a window whose middle words hold numbers
  yields more than one);
- number near time unit (` N ... hour`) and time unit near number (` day ... N`), 0-3 words apart:
  each number x each unit word found in the window counts as key "7-day".

Decoding: the transformers versions Pythia ran with (4.2x-4.3x) cleaned up tokenization spaces
by default (" ." -> ".", " 's" -> "'s", ...; transformers#25840 shows it on the Pythia
tokenizer), and that clean-up changes which windows exist (" 12 , 3" loses its window), so
`decode_rows` applies the same replacements after the Rust decode.

`count_texts_reference` is the literal procedure (a lookahead tried at every position), kept as
ground truth; `count_texts` and `count_samples` give identical counts several times faster:

- the rows are scanned as one UTF-8 buffer (NUL before each row's " ", which no pattern matches),
  the samples' bytes gathered from a per-token byte table with numpy (no per-row decode);
- transformers' clean-up is done on those bytes as vectorised deletions of spaces (stage by
  stage, in transformers' order), not ten `str.replace` passes;
- a byte-level prefilter (`_candidate_regions`) keeps only the words a match can touch (within
  four words of a number followed by a number or time unit, or of a unit followed by a number),
  so the regexes scan a fraction of the text. Their patterns start with a literal space, so the
  engine skips to candidate positions in C, and one `findall` per pattern returns the windows;
- each distinct window's keys are built once and repeated by its count.

Counts are kept per part, a range of consecutive training steps (`write_part`), and merged into
cumulative counts per checkpoint step (`merge_parts`), so each part is counted once however many
checkpoints there are, and counting parallelises over parts.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing as mp
import os
import re
import string
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pythia_repro.atomic import atomic_file
from pythia_repro.progress import Progress

if TYPE_CHECKING:  # pandas is imported where used: pool workers that only count never pay for it
    import pandas as pd

_PUNCT = re.escape(string.punctuation)
TIME_UNITS = "minute|hour|day|week|month|year|decade"

# Pythia's patterns, character for character (their `search_string_lazy` and the two time-unit ones).
_REF_WINDOW = re.compile(rf"(?=( (\d){{1,5}} ((\w|[{_PUNCT}])+\s+){{1,3}}(\d){{1,5}}))")
_REF_TIME_A = re.compile(rf"(?=( (\d){{1,5}} ((\w|[{_PUNCT}])+\s+){{0,3}}?({TIME_UNITS})))")
_REF_TIME_B = re.compile(rf"(?=( ({TIME_UNITS}) ((\w|[{_PUNCT}])+\s+){{0,3}}?(\d){{1,5}}))")

# The same searches with the leading space moved out of the lookahead. A lookahead-first pattern
# is tried at every position; one that starts with a literal lets the engine jump between spaces.
# `(\w|[P])` -> `[\wP]` and `(\d)` -> `\d` match the same strings and backtrack to the same first
# match (only which alternative matched a character differs); the group is the window without
# its leading space, which holds the same numbers and unit words.
_WINDOW = re.compile(rf" (?=(\d{{1,5}} (?:[\w{_PUNCT}]+\s+){{1,3}}\d{{1,5}}))")
_TIME_A = re.compile(rf" (?=(\d{{1,5}} (?:[\w{_PUNCT}]+\s+){{0,3}}?(?:{TIME_UNITS})))")
_TIME_B = re.compile(rf" (?=((?:{TIME_UNITS}) (?:[\w{_PUNCT}]+\s+){{0,3}}?\d{{1,5}}))")

_NUMBER = re.compile(r"\d{1,5}")
_UNIT = re.compile(TIME_UNITS)

# transformers' clean_up_tokenization, in its order (each replacement sees the previous ones' output).
_CLEAN_UP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
             (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


def clean_up_tokenization(text: str) -> str:
    for old, new in _CLEAN_UP:
        text = text.replace(old, new)
    return text


# ---------------------------------------------------------------------------------------------
# Counting


def _window_keys_reference(window: str, keys: list[str]) -> None:
    numbers = sorted(int(n) for n in _NUMBER.findall(window))
    keys.extend(str(n) for n in numbers)
    keys.extend(f"{a}-{b}" for a, b in itertools.combinations(numbers, 2))


def _time_keys(window: str, keys: list[str]) -> None:
    numbers = sorted(int(n) for n in _NUMBER.findall(window))
    units = _UNIT.findall(window)
    keys.extend(f"{n}-{u}" for n in numbers for u in units)


def count_texts_reference(texts: Iterable[str], *, time_units: bool = True) -> Counter:
    """Pythia's procedure as written: a lookahead at every position of " " + text. Slow; ground truth."""
    keys: list[str] = []
    for text in texts:
        line = " " + text
        for m in _REF_WINDOW.finditer(line):
            _window_keys_reference(m.group(1), keys)
        if time_units:
            for pattern in (_REF_TIME_A, _REF_TIME_B):
                for m in pattern.finditer(line):
                    _time_keys(m.group(1), keys)
    return Counter(keys)


def _count_texts_str(texts: Iterable[str], time_units: bool, keys: list[str]) -> None:
    """The keys of `count_texts_reference`, text by text (the fallback of `_count_buffer`)."""
    for text in texts:
        line = " " + text
        _text_keys(line, time_units, keys)


def _number_keys(found: list[str]) -> list[str]:
    """The keys of a window whose numbers are `found`: each number, each sorted pair (as the reference)."""
    if len(found) == 2:  # nearly every window: skip the sort and combinations machinery
        a, b = int(found[0]), int(found[1])
        if a > b:
            a, b = b, a
        sa, sb = str(a), str(b)
        return [sa, sb, sa + "-" + sb]
    numbers = list(map(str, sorted(map(int, found))))
    return numbers + [a + "-" + b for a, b in itertools.combinations(numbers, 2)]


def _text_keys(text: str, time_units: bool, keys: list[str]) -> None:
    """Keys of every window in `text`; each distinct window's keys are built once, times its count."""
    by_numbers: dict[tuple[str, ...], list[str]] = {}
    find = _NUMBER.findall
    for window, n in Counter(_WINDOW.findall(text)).items():
        found = tuple(find(window))
        window_keys = by_numbers.get(found)
        if window_keys is None:
            window_keys = by_numbers[found] = _number_keys(found)
        keys += window_keys * n if n > 1 else window_keys
    if time_units:
        for pattern in (_TIME_A, _TIME_B):
            for window, n in Counter(pattern.findall(text)).items():
                window_keys = []
                _time_keys(window, window_keys)
                keys += window_keys * n if n > 1 else window_keys


# Byte-level prefilter. Every match of the three patterns starts at a space and spans at most five
# whitespace-separated words, one of which starts with a digit: the window's first number (a
# whole word) with a word starting with a digit 2-4 words on, a number with a word starting with
# a time unit 1-4 words on, or a word starting with a unit with one starting with a digit 1-4
# on. `_candidate_regions` keeps only the words within four of such a start (and the whitespace
# before each), joined by NUL, which no pattern matches: the scans then see a fraction of the
# text and find exactly the same windows. Words are told apart on the UTF-8 bytes exactly (\s is
# str.isspace: the ASCII whitespace bytes and the UTF-8 sequences of the other 19 space
# characters); "digit" is an over-approximation (an ASCII digit, or a lead byte that starts some
# Unicode decimal digit), so a kept region may hold no match but a match is never cut.
_SPACE_CHARS = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + \
    "\u2028\u2029\u202f\u205f\u3000"
_WS_BY_LEAD: dict[int, list[bytes]] = {}
for _c in _SPACE_CHARS[10:]:
    _WS_BY_LEAD.setdefault(_c.encode()[0], []).append(_c.encode())
_DIGIT_LEADS = bytes(range(ord("0"), ord("9") + 1)) + bytes((0xD9, 0xDB, 0xDF, 0xE0, 0xE1, 0xEA, 0xEF, 0xF0))
_DIGIT_START = np.zeros(256, dtype=bool)
_DIGIT_START[list(_DIGIT_LEADS)] = True
_DIGIT_BYTE = _DIGIT_START.copy()  # may be part of a digit: + UTF-8 continuation bytes
_DIGIT_BYTE[0x80:0xC0] = True
_UNITS_BY_LEAD: dict[int, list[bytes]] = {}
for _u in TIME_UNITS.split("|"):
    _UNITS_BY_LEAD.setdefault(ord(_u[0]), []).append(_u.encode())
_PAD = 8  # NUL bytes after a buffer, so that byte i + k may be read for k < _PAD


def _whitespace(a: np.ndarray) -> np.ndarray:
    """Which bytes of `a` are (part of) a character that str.isspace() holds."""
    ws = (a == 0x20) | ((a - np.uint8(9)) < 5) | ((a - np.uint8(0x1C)) < 4)
    if len(a) > _PAD and int(a.max()) >= 0xC2:
        body = a[: len(a) - _PAD]
        for lead, seqs in _WS_BY_LEAD.items():
            at = np.flatnonzero(body == lead)
            if not len(at):
                continue
            for seq in seqs:
                hit = at
                for k in range(1, len(seq)):
                    hit = hit[a[hit + k] == seq[k]]
                for k in range(len(seq)):
                    ws[hit + k] = True
    return ws


def _candidate_regions(a: np.ndarray, time_units: bool) -> np.ndarray:
    """The words of `a` (UTF-8 bytes ending in _PAD NULs) that a match may touch, as NUL-joined bytes."""
    n = len(a)
    ws = _whitespace(a)
    word_start = ~ws
    word_start[1:] &= ws[:-1]
    s = np.flatnonzero(word_start)
    nw = len(s)
    if nw == 0:
        return a[:0]
    word_end = ~ws
    word_end[:-1] &= ws[1:]
    e = np.flatnonzero(word_end)
    first = a[s]
    d = np.zeros(nw + 4, dtype=bool)  # the word starts with a digit (padded for the shifts below)
    d[:nw] = _DIGIT_START[first]
    # the words that are digits only, at most 5 characters of at most 4 bytes each
    cand = np.flatnonzero(d[:nw])
    size = e[cand] - s[cand] + 1
    ok = size <= 20
    cand, size = cand[ok], size[ok]
    at = s[cand]
    for k in range(1, int(size.max()) if len(size) else 0):
        ok = (size <= k) | _DIGIT_BYTE[a[np.minimum(at + k, n - 1)]]
        cand, size, at = cand[ok], size[ok], at[ok]
    number = np.zeros(nw, dtype=bool)
    number[cand] = True
    start = number & (d[2 : nw + 2] | d[3 : nw + 3] | d[4 : nw + 4])
    if time_units:
        u = np.zeros(nw + 4, dtype=bool)  # the word starts with a time unit
        for lead, words in _UNITS_BY_LEAD.items():
            at0 = np.flatnonzero(first == lead)
            for word in words:
                hit = at0
                for k in range(1, len(word)):
                    hit = hit[a[s[hit] + k] == word[k]]
                u[hit] = True
        start |= number & (u[1 : nw + 1] | u[2 : nw + 2] | u[3 : nw + 3] | u[4 : nw + 4])
        start |= u[:nw] & (d[1 : nw + 1] | d[2 : nw + 2] | d[3 : nw + 3] | d[4 : nw + 4])
    keep = start.copy()  # a match starting at word j lies in words j..j+4
    for k in range(1, 5):
        keep[k:] |= start[:-k]
    edge = np.diff(keep.view(np.int8), prepend=0, append=0)
    first_word, last_word = np.flatnonzero(edge == 1), np.flatnonzero(edge == -1) - 1
    if not len(first_word):
        return a[:0]
    # a region: the whitespace before its first word through its last word, then one NUL
    lo = np.where(first_word > 0, e[first_word - 1] + 1, 0)
    length = e[last_word] + 2 - lo
    out_start = np.cumsum(length) - length
    index = np.repeat(lo - out_start, length)
    index += np.arange(len(index))
    index[out_start + length - 1] = n - 1  # a NUL of the padding
    return a[index]


def _count_buffer(a: np.ndarray, time_units: bool, keys: list[str]) -> None:
    """Keys of the rows in `a`: UTF-8 bytes, each row as NUL, space, row, then _PAD NULs."""
    regions = _candidate_regions(a, time_units)
    if len(regions):
        _text_keys(regions.tobytes().decode("utf-8", "replace"), time_units, keys)


def _batches(texts: Iterable[str], size: int = 1 << 22) -> Iterator[list[str]]:
    """`texts` in lists of about `size` characters."""
    batch, length = [], 0
    for text in texts:
        batch.append(text)
        length += len(text)
        if length >= size:
            yield batch
            batch, length = [], 0
    if batch:
        yield batch


def _texts_buffer(texts: list[str]) -> np.ndarray:
    data = ("\x00 " + "\x00 ".join(texts) + "\x00" * _PAD).encode()  # UnicodeEncodeError on lone surrogates
    return np.frombuffer(data, dtype=np.uint8)


def count_texts(texts: Iterable[str], *, time_units: bool = True) -> Counter:
    """The counts of `count_texts_reference`, computed faster (see the module docstring)."""
    keys: list[str] = []
    for batch in _batches(texts):
        try:
            a = _texts_buffer(batch)
        except UnicodeEncodeError:  # lone surrogates have no UTF-8: scan the strings themselves
            _count_texts_str(batch, time_units, keys)
        else:
            _count_buffer(a, time_units, keys)
    return Counter(keys)  # one C-level count instead of a dict update per key


# transformers' clean-up as deletions of spaces in the UTF-8 bytes (every pattern is ASCII, and
# deleting an ASCII byte between two others changes no other character's decoding). The
# replacements run in order on the previous ones' output; those of one stage commute: " X" for X
# in .?!, ; then " ' "; then " n't" and " 'm", " 's", " 've", " 're".
_BEFORE_PUNCT = np.zeros(256, dtype=bool)
_BEFORE_PUNCT[[ord(c) for c in ".?!,"]] = True
_SP, _QUOTE = ord(" "), ord("'")


def _delete(a: np.ndarray, at: np.ndarray, marks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    at = np.sort(at)
    keep = np.ones(len(a), dtype=bool)
    keep[at] = False
    return a[keep], marks - np.searchsorted(at, marks)


def _clean_up_bytes(a: np.ndarray, marks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`clean_up_tokenization` on the rows of `a` (separated by bytes that are in no pattern).

    `a` starts with two bytes no pattern holds and ends with _PAD NULs; `marks` (positions of
    bytes that are never deleted) are returned moved with them.
    """
    at = np.flatnonzero((a[:-1] == _SP) & _BEFORE_PUNCT[a[1:]])
    if len(at):
        a, marks = _delete(a, at, marks)
    q = np.flatnonzero(a == _QUOTE)
    at = q[(a[q - 1] == _SP) & (a[q + 1] == _SP)] - 1  # " ' " -> "'"
    if len(at):
        if len(at) > 1 and (np.diff(at) < 3).any():  # overlapping (" ' ' "): replace takes them left to right
            taken, last = [], -3
            for i in at.tolist():
                if i >= last + 3:
                    taken.append(i)
                    last = i
            at = np.asarray(taken, dtype=np.int64)
        a, marks = _delete(a, np.concatenate([at, at + 2]), marks)
        q = np.flatnonzero(a == _QUOTE)
    nxt, nxt2 = a[q + 1], a[q + 2]
    nt = q[(a[q - 2] == _SP) & (a[q - 1] == ord("n")) & (nxt == ord("t"))] - 2
    contraction = (a[q - 1] == _SP) & ((nxt == ord("m")) | (nxt == ord("s"))
                                       | (((nxt == ord("v")) | (nxt == ord("r"))) & (nxt2 == ord("e"))))
    at = np.concatenate([nt, q[contraction] - 1])
    if len(at):
        a, marks = _delete(a, at, marks)
    return a, marks


class _ByteLevelTable:
    """Decodes byte-level BPE rows from a byte string per token id, vectorised with numpy.

    For a ByteLevel decoder the Rust decode is: concatenate each token's bytes (its characters
    mapped back through the GPT-2 byte alphabet), then UTF-8 with invalid bytes replaced by U+FFFD.
    Gathering the bytes with numpy and decoding each row with Python's "replace" (which replaces
    the same maximal invalid subsequences) gives the same strings about 3x faster than
    `decode_batch`; the tests compare the two on real and random ids. One extra id (`separator`)
    stands for the bytes NUL, \\x01 that `row_buffer` puts before each row.
    """

    def __init__(self, tokenizer) -> None:
        from tokenizers import pre_tokenizers

        # GPT-2's byte alphabet: the character each byte 0..255 is written as in the vocabulary.
        alphabet = _byte_alphabet()
        byte_of = {ch: i for i, ch in enumerate(alphabet)}
        if set(byte_of) != set(pre_tokenizers.ByteLevel.alphabet()):
            raise RuntimeError("tokenizers' ByteLevel alphabet is not GPT-2's: cannot decode it here")
        to_latin1 = {ord(ch): i for i, ch in enumerate(alphabet)}
        in_alphabet = frozenset(alphabet).issuperset
        pieces = []
        for i in range(tokenizer.get_vocab_size(with_added_tokens=True)):
            token = tokenizer.id_to_token(i) or ""
            if in_alphabet(token):
                pieces.append(token.translate(to_latin1).encode("latin-1"))
            else:  # characters outside the alphabet (added tokens' spaces) decode as their own UTF-8
                pieces.append(b"".join(bytes((byte_of[c],)) if c in byte_of else c.encode() for c in token))
        self.separator = len(pieces)
        pieces.append(b"\x00\x01")
        self.lengths = np.array([len(p) for p in pieces], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        self.flat = np.frombuffer(b"".join(pieces), dtype=np.uint8)
        self.max_length = int(self.lengths.max())
        self.lengths32, self.offsets32 = self.lengths.astype(np.int32), self.offsets.astype(np.int32)

    def _check(self, ids: np.ndarray) -> None:
        if ids.size and (ids.min() < 0 or ids.max() >= self.separator):
            raise ValueError(f"token ids outside the vocabulary [0, {self.separator})")

    def _gather(self, ids: np.ndarray, pad: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(the bytes of `ids` and `pad` NULs, each token's end in them)."""
        # 32-bit index arithmetic where it cannot overflow: half the memory traffic of 64-bit
        narrow = ids.size * self.max_length < 2**31
        lengths, offsets = (self.lengths32, self.offsets32) if narrow else (self.lengths, self.offsets)
        lengths = lengths[ids]
        ends = np.cumsum(lengths, dtype=lengths.dtype)
        total = int(ends[-1]) if len(ends) else 0
        # index of every output byte in `flat`: the token's offset + the byte's position in the token
        shift = np.repeat(offsets[ids] - (ends - lengths), lengths)
        shift += np.arange(total, dtype=shift.dtype)
        out = np.zeros(total + pad, dtype=np.uint8)
        np.take(self.flat, shift, out=out[:total])
        return out, ends

    def decode(self, tokens: np.ndarray) -> list[str]:
        self._check(tokens)
        data, ends = self._gather(tokens.ravel())
        row_ends = ends.reshape(tokens.shape)[:, -1] if tokens.shape[1] else np.zeros(len(tokens), np.int64)
        starts = np.concatenate([[0], row_ends[:-1]]).astype(np.int64)
        data = data.tobytes()
        return [data[a:b].decode("utf-8", "replace") for a, b in zip(starts.tolist(), row_ends.tolist(), strict=True)]

    def row_buffer(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(NUL, \\x01, row bytes for each row, then _PAD NULs; the positions of the \\x01 bytes)."""
        self._check(tokens)
        ids = np.empty((tokens.shape[0], tokens.shape[1] + 1), dtype=np.int64)
        ids[:, 0] = self.separator
        ids[:, 1:] = tokens
        data, ends = self._gather(ids.ravel(), _PAD)
        marks = ends.reshape(ids.shape)[:, 0] - 1
        return data, marks


def _byte_alphabet() -> list[str]:
    """The character GPT-2's byte-level BPE writes for each byte value, indexed by byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


# id -> (tokenizer, table): holding the tokenizer keeps its id from being reused by another.
_TABLES: dict[int, tuple[object, _ByteLevelTable | None]] = {}


def _byte_table(tokenizer) -> _ByteLevelTable | None:
    """The fast decoder of a plain ByteLevel tokenizer (cached per tokenizer), None for any other."""
    from tokenizers import decoders

    key = id(tokenizer)
    if key not in _TABLES:
        byte_level = isinstance(tokenizer.decoder, decoders.ByteLevel)
        _TABLES[key] = (tokenizer, _ByteLevelTable(tokenizer) if byte_level else None)
    return _TABLES[key][1]


def decode_rows(tokens: np.ndarray, tokenizer, *, clean_up: bool = True) -> list[str]:
    """Decode each row as transformers' `batch_decode` did for Pythia: special tokens kept, clean-up on.

    `tokenizer` is a `tokenizers.Tokenizer`; a ByteLevel one (GPT-NeoX-20B's, ours) is decoded
    by `_ByteLevelTable`, any other by its Rust `decode_batch`.
    """
    return SampleDecoder(tokenizer, clean_up).texts(np.asarray(tokens))


def _sample_keys(tokens: np.ndarray, tokenizer, table: _ByteLevelTable | None, clean_up: bool, time_units: bool,
                 keys: list[str]) -> None:
    if table is None:
        texts = tokenizer.decode_batch(tokens.tolist(), skip_special_tokens=False)
        for batch in _batches([clean_up_tokenization(t) for t in texts] if clean_up else texts):
            _count_buffer(_texts_buffer(batch), time_units, keys)
        return
    a, marks = table.row_buffer(tokens.astype(np.int64, copy=False))
    if clean_up:
        a, marks = _clean_up_bytes(a, marks)
    a[marks] = _SP  # each row's " " prefix
    _count_buffer(a, time_units, keys)


def count_samples(tokens: np.ndarray, tokenizer, *, clean_up: bool = True, time_units: bool = True) -> Counter:
    """Term counts of training samples `tokens` (int array (n, L)), one decoded text per row."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 2:
        raise ValueError(f"count_samples: expected a 2-D token array (samples, tokens), got shape {tokens.shape}")
    keys: list[str] = []
    _sample_keys(tokens, tokenizer, _byte_table(tokenizer), clean_up, time_units, keys)
    return Counter(keys)


def load_tokenizer(tokenizer):
    """A `tokenizers.Tokenizer` from one, or from the path of a tokenizer.json."""
    from tokenizers import Tokenizer

    if isinstance(tokenizer, Tokenizer):
        return tokenizer
    return Tokenizer.from_file(str(tokenizer))


class SampleDecoder:
    """`decode_rows` for pool workers: picklable, a ByteLevel tokenizer travelling as its byte table
    (nothing to parse or build in each worker), any other as its JSON."""

    def __init__(self, tokenizer, clean_up: bool = True) -> None:
        self.tokenizer = load_tokenizer(tokenizer)
        self.table = _byte_table(self.tokenizer)
        self.clean_up = clean_up

    def __getstate__(self) -> dict:
        return {"table": self.table, "clean_up": self.clean_up,
                "json": None if self.table is not None else self.tokenizer.to_str()}

    def __setstate__(self, state: dict) -> None:
        from tokenizers import Tokenizer

        self.table, self.clean_up = state["table"], state["clean_up"]
        self.tokenizer = None if state["json"] is None else Tokenizer.from_str(state["json"])

    def texts(self, tokens: np.ndarray) -> list[str]:
        """The decoded rows of `tokens`, as `decode_rows`."""
        if self.table is not None:
            texts = self.table.decode(tokens.astype(np.int64, copy=False))
        else:
            texts = self.tokenizer.decode_batch(tokens.tolist(), skip_special_tokens=False)
        return [clean_up_tokenization(t) for t in texts] if self.clean_up else texts


class _TermKeys:
    """The term keys of a chunk of samples (what `count_range` counts)."""

    def __init__(self, decoder: SampleDecoder, time_units: bool) -> None:
        self.decoder, self.time_units = decoder, time_units

    def __call__(self, tokens: np.ndarray) -> list[str]:
        keys: list[str] = []
        d = self.decoder
        _sample_keys(tokens, d.tokenizer, d.table, d.clean_up, self.time_units, keys)
        return keys


_worker: dict = {}


def _init_worker(order, keys_of) -> None:
    # One process per core already: the Rust decoder's own threads would only oversubscribe.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _worker.update(order=order, keys_of=keys_of)


def _count_chunk(bounds: tuple[int, int]) -> tuple[int, Counter]:
    tokens = _worker["order"].samples(*bounds)
    return int(tokens.size), Counter(_worker["keys_of"](tokens))


def _chunks(start: int, stop: int, size: int) -> Iterator[tuple[int, int]]:
    for s in range(start, stop, size):
        yield s, min(s + size, stop)


def scan_range(
    order,
    keys_of: Callable[[np.ndarray], list[str]],
    start_sample: int,
    stop_sample: int,
    *,
    batch: int = 256,
    workers: int = 1,
    label: str = "term-counts",
    interval: float = 10.0,
) -> Counter:
    """The counts of the keys `keys_of(tokens)` finds in training samples [start_sample, stop_sample)
    of `order` (`.samples(a, b)`), `batch` samples per call.

    With `workers` > 1 the chunks are counted in a process pool (`keys_of` must pickle: it is sent
    to each worker once); progress lines report tokens/s and the ETA.
    """
    if not 0 <= start_sample <= stop_sample:
        raise ValueError(f"{label}: bad sample range [{start_sample}, {stop_sample})")
    width = int(order.seq_length) + 1
    total = Counter()
    chunks = list(_chunks(start_sample, stop_sample, max(1, int(batch))))
    with Progress(label, total=(stop_sample - start_sample) * width, unit="tokens", interval=interval) as progress:
        if workers <= 1:
            for a, b in chunks:
                tokens = order.samples(a, b)
                total.update(keys_of(tokens))  # counted in C straight into the total
                progress.update(int(tokens.size))
        else:
            with mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(order, keys_of)) as pool:
                for n_tokens, counts in pool.imap_unordered(_count_chunk, chunks):
                    total.update(counts)
                    progress.update(n_tokens)
    return total


def count_range(
    order,
    tokenizer,
    start_sample: int,
    stop_sample: int,
    *,
    batch: int = 256,
    workers: int = 1,
    clean_up: bool = True,
    time_units: bool = True,
    label: str = "term-counts",
    interval: float = 10.0,
) -> Counter:
    """Term counts of training samples [start_sample, stop_sample) of `order` (`.samples(a, b)`).

    `tokenizer`: a `tokenizers.Tokenizer` or a tokenizer.json path. With `workers` > 1 the
    samples are counted in a process pool, `batch` samples per task (`scan_range`).
    """
    keys_of = _TermKeys(SampleDecoder(tokenizer, clean_up), time_units)
    return scan_range(order, keys_of, start_sample, stop_sample, batch=batch, workers=workers, label=label,
                      interval=interval)


# ---------------------------------------------------------------------------------------------
# Parts and their merge into cumulative counts

_FROM, _TO, _STEPS = b"pythia_repro.from_step", b"pythia_repro.to_step", b"pythia_repro.steps"


def _counter_table(counter: Counter | dict):
    import pyarrow as pa

    terms = sorted(counter)
    return pa.table({"term": pa.array(terms, pa.string()),
                     "count": pa.array([counter[t] for t in terms], pa.int64())})


def _write_parquet(path: str | Path, table) -> None:
    import pyarrow.parquet as pq

    with atomic_file(path, "wb") as fh:
        pq.write_table(table, fh)


def write_part(path: str | Path, counter: Counter | dict, from_step: int, to_step: int) -> None:
    """Counts of training samples [from_step * B, to_step * B) as Parquet (term str, count int64).

    The step range lives in the file's metadata, so a merge can check that the parts tile the run.
    """
    if not 0 <= from_step < to_step:
        raise ValueError(f"{path}: bad step range [{from_step}, {to_step})")
    table = _counter_table(counter)
    meta = {**(table.schema.metadata or {}), _FROM: str(int(from_step)).encode(), _TO: str(int(to_step)).encode()}
    _write_parquet(path, table.replace_schema_metadata(meta))


def read_part(path: str | Path) -> tuple[pd.DataFrame, int, int]:
    """(frame of term/count, from_step, to_step) of a part written by `write_part`."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    meta = table.schema.metadata or {}
    if _FROM not in meta or _TO not in meta:
        raise ValueError(f"{path}: not a term-count part (no from/to step in its Parquet metadata)")
    return table.to_pandas(), int(meta[_FROM]), int(meta[_TO])


def merge_parts(
    parts: Iterable[str | Path],
    checkpoint_steps: Sequence[int],
    *,
    terms: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Cumulative counts at each checkpoint step: columns step (int64), term (str), count (int64).

    `count` at `step` is over training samples j < step * B. The parts must tile [0, last step)
    without gap or overlap, and every checkpoint step must be a boundary between parts (parts may
    be finer than the checkpoints). A term absent at a step has count 0 there and no row; the
    steps covered are in `frame.attrs["steps"]` (a step-0 checkpoint has no rows at all).
    `terms` keeps only those terms (the Pile's pair keys run to millions).
    """
    import pandas as pd

    steps = sorted({int(s) for s in checkpoint_steps})
    if not steps or steps[0] < 0:
        raise ValueError(f"merge_parts: checkpoint steps must be non-negative and non-empty, got {checkpoint_steps}")
    import pyarrow.parquet as pq

    ranges = []
    for path in parts:
        meta = pq.read_schema(path).metadata or {}
        if _FROM not in meta or _TO not in meta:
            raise ValueError(f"{path}: not a term-count part (no from/to step in its Parquet metadata)")
        ranges.append((int(meta[_FROM]), int(meta[_TO]), Path(path)))
    ranges.sort(key=lambda r: (r[0], r[1]))
    expected = 0
    for a, b, path in ranges:
        if a > expected:
            raise ValueError(f"{path}: covers steps [{a}, {b}) but steps [{expected}, {a}) are in no part (gap)")
        if a < expected:
            raise ValueError(f"{path}: covers steps [{a}, {b}), overlapping the parts before it (to step {expected})")
        expected = b
    boundaries = {0} | {b for _, b, _ in ranges}
    missing = [s for s in steps if s not in boundaries]
    if missing:
        detail = (f"parts end at step {expected}" if missing[-1] > expected
                  else "a part spans across it; parts must end at checkpoint steps")
        files = ", ".join(str(p) for _, _, p in ranges) or "no parts"
        raise ValueError(f"merge_parts: checkpoint step(s) {missing} are not part boundaries ({detail}; {files})")
    keep = None if terms is None else set(terms)

    frames, running = [], pd.Series(dtype="int64")
    pending = iter(ranges)
    position = 0
    for step in steps:
        while position < step:
            a, b, path = next(pending)
            frame, _, _ = read_part(path)
            if keep is not None:
                frame = frame[frame["term"].isin(keep)]
            running = running.add(frame.set_index("term")["count"], fill_value=0).astype("int64")
            position = b
        cumulative = running[running > 0].sort_index()
        frames.append(pd.DataFrame({"step": np.full(len(cumulative), step, dtype="int64"),
                                    "term": cumulative.index.astype(str), "count": cumulative.to_numpy("int64")}))
    out = pd.concat(frames, ignore_index=True)
    out["term"] = out["term"].astype(object)
    out.attrs["steps"] = steps
    return out


def write_counts(path: str | Path, frame: pd.DataFrame) -> None:
    """The cumulative table of `merge_parts` as Parquet, atomically; its steps go in the metadata."""
    import pyarrow as pa

    steps = frame.attrs.get("steps") or sorted(int(s) for s in frame["step"].unique())
    table = pa.table({"step": pa.array(frame["step"].to_numpy("int64")),
                      "term": pa.array(frame["term"].astype(str).tolist(), pa.string()),
                      "count": pa.array(frame["count"].to_numpy("int64"))})
    table = table.replace_schema_metadata({_STEPS: json.dumps([int(s) for s in steps]).encode()})
    _write_parquet(path, table)


def read_counts(path: str | Path) -> pd.DataFrame:
    """A table written by `write_counts`, with `attrs["steps"]` (the checkpoint steps it covers)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    meta = table.schema.metadata or {}
    frame = table.to_pandas()
    frame.attrs["steps"] = json.loads(meta[_STEPS]) if _STEPS in meta else sorted(frame["step"].unique().tolist())
    return frame
