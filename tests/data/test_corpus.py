"""The Pile-format reader (data/corpus.py): formats, order, malformed input, empty documents."""

from __future__ import annotations

import gzip
import json
import re

import pytest
import zstandard

from pythia_repro.data.corpus import CorpusError, ReadPolicy, ReadStats, iter_documents, open_text, open_text_for_write

DOCS = [
    {"text": "First document.", "meta": {"pile_set_name": "Pile-CC"}},
    {"text": "", "meta": {"pile_set_name": "Github"}},
    {"text": "Unicode: caf\u00e9 \u2013 \u4e2d\u6587.\nA second line.", "meta": {"pile_set_name": "ArXiv"}},
    {"text": "No meta at all."},
]


def _lines(docs) -> str:
    return "".join(json.dumps(d) + "\n" for d in docs)


def _write(path, text: str) -> str:
    if str(path).endswith(".zst"):
        path.write_bytes(zstandard.ZstdCompressor().compress(text.encode()))
    elif str(path).endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".jsonl.zst"])
def test_reads_every_format(tmp_path, suffix):
    path = _write(tmp_path / f"shard{suffix}", _lines(DOCS))
    stats = ReadStats()
    docs = list(iter_documents([path], stats=stats))
    assert [d.text for d in docs] == [d["text"] for d in DOCS]
    assert [d.set_name for d in docs] == ["Pile-CC", "Github", "ArXiv", None]
    assert [d.line for d in docs] == [1, 2, 3, 4]
    assert all(d.path == path for d in docs)
    assert stats.as_dict() == {"documents": 4, "empty": 1, "malformed_skipped": 0, "malformed_examples": [],
                               "empty_shards": 0, "empty_shard_examples": []}


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".jsonl.zst"])
def test_writer_round_trips(tmp_path, suffix):
    path = tmp_path / f"out{suffix}"
    with open_text_for_write(path) as fh:
        fh.write(_lines(DOCS))
    with open_text(path) as fh:
        assert fh.read() == _lines(DOCS)


def test_files_are_read_in_the_given_order(tmp_path):
    a = _write(tmp_path / "a.jsonl.zst", _lines([{"text": "a1"}, {"text": "a2"}]))
    b = _write(tmp_path / "b.jsonl", _lines([{"text": "b1"}]))
    assert [d.text for d in iter_documents([b, a])] == ["b1", "a1", "a2"]
    assert [(d.path, d.line) for d in iter_documents([a, b])] == [(a, 1), (a, 2), (b, 1)]


def test_zst_with_several_frames(tmp_path):
    """pzstd and `cat a.zst b.zst` write several frames; all of them are read."""
    c = zstandard.ZstdCompressor()
    path = tmp_path / "multi.jsonl.zst"
    path.write_bytes(c.compress(_lines(DOCS[:2]).encode()) + c.compress(_lines(DOCS[2:]).encode()))
    assert [d.text for d in iter_documents([path])] == [d["text"] for d in DOCS]


def test_blank_lines_are_not_documents_but_keep_line_numbers(tmp_path):
    path = _write(tmp_path / "s.jsonl", json.dumps({"text": "x"}) + "\n\n   \n" + json.dumps({"text": "y"}) + "\n")
    docs = list(iter_documents([path]))
    assert [(d.text, d.line) for d in docs] == [("x", 1), ("y", 4)]


def test_last_line_without_newline(tmp_path):
    path = _write(tmp_path / "s.jsonl", json.dumps({"text": "x"}) + "\n" + json.dumps({"text": "y"}))
    assert [d.text for d in iter_documents([path])] == ["x", "y"]


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ('{"text": "unterminated', "malformed JSON"),
        ("not json at all", "malformed JSON"),
        ('["a", "list"]', "expected an object with a 'text' field"),
        ('{"content": "no text field"}', "expected an object with a 'text' field"),
        ('{"text": 42}', "'text' must be a string, got int"),
        ('{"text": null}', "'text' must be a string, got NoneType"),
        ('{"text": ["a"]}', "'text' must be a string, got list"),
    ],
)
@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.zst"])
def test_malformed_line_names_file_and_line(tmp_path, suffix, bad_line, message):
    text = _lines(DOCS[:2]) + bad_line + "\n" + _lines(DOCS[2:])
    path = _write(tmp_path / f"bad{suffix}", text)
    with pytest.raises(CorpusError, match=rf"^{re.escape(path)}:3: .*{re.escape(message)}"):
        list(iter_documents([path]))


def test_error_is_the_default_and_stops_at_the_bad_line(tmp_path):
    path = _write(tmp_path / "bad.jsonl", _lines(DOCS[:1]) + "{oops\n" + _lines(DOCS[1:]))
    seen = []
    with pytest.raises(CorpusError, match=":2: malformed JSON"):
        for doc in iter_documents([path]):
            seen.append(doc.text)
    assert seen == [DOCS[0]["text"]]


def test_skip_mode_counts_and_continues(tmp_path):
    good = _write(tmp_path / "good.jsonl.gz", _lines(DOCS))
    bad = _write(
        tmp_path / "bad.jsonl.zst",
        _lines(DOCS[:1]) + "{oops\n" + '{"text": 3}\n' + _lines(DOCS[1:2]) + "[1]\n" + _lines(DOCS[2:]),
    )
    stats = ReadStats()
    docs = list(iter_documents([good, bad], ReadPolicy(on_malformed="skip"), stats))
    assert [d.text for d in docs] == [d["text"] for d in DOCS] * 2
    assert [d.line for d in docs if d.path == bad] == [1, 4, 6, 7]
    report = stats.as_dict()
    assert (report["documents"], report["empty"], report["malformed_skipped"]) == (8, 2, 3)
    assert report["malformed_examples"][0].startswith(f"{bad}:2: malformed JSON")
    assert report["malformed_examples"][1] == f"{bad}:3: 'text' must be a string, got int"
    json.dumps(report)  # reports are written as JSON by every stage


def test_skip_mode_keeps_a_bounded_number_of_examples(tmp_path):
    path = _write(tmp_path / "bad.jsonl", "{oops\n" * 50 + _lines(DOCS))
    stats = ReadStats()
    assert len(list(iter_documents([path], ReadPolicy(on_malformed="skip"), stats))) == len(DOCS)
    assert stats.malformed == 50
    assert len(stats.malformed_examples) == 5


def test_unknown_on_malformed_mode(tmp_path):
    path = _write(tmp_path / "s.jsonl", _lines(DOCS))
    with pytest.raises(ValueError, match=r"on_malformed must be one of \('error', 'skip'\), not 'ignore'"):
        list(iter_documents([path], ReadPolicy(on_malformed="ignore")))


def test_empty_documents_are_yielded_and_counted(tmp_path):
    path = _write(tmp_path / "s.jsonl", _lines([{"text": ""}, {"text": ""}, {"text": "x"}, {"text": ""}]))
    stats = ReadStats()
    docs = list(iter_documents([path], stats=stats))
    assert [d.text for d in docs] == ["", "", "x", ""]
    assert (stats.documents, stats.empty) == (4, 3)


def test_empty_file_has_no_documents(tmp_path):
    plain = _write(tmp_path / "empty.jsonl", "")
    zst = _write(tmp_path / "empty.jsonl.zst", "")
    stats = ReadStats()
    assert list(iter_documents([plain, zst], stats=stats)) == []
    assert stats.documents == 0


def test_missing_file(tmp_path):
    good = _write(tmp_path / "good.jsonl", _lines(DOCS))
    missing = tmp_path / "nope.jsonl.zst"
    with pytest.raises(CorpusError, match=rf"^{re.escape(str(missing))}: corpus file not found"):
        list(iter_documents([good, missing]))


def test_truncated_zst_is_an_error_not_a_short_file(tmp_path):
    text = _lines([{"text": f"document {i} " * 30} for i in range(3000)])
    data = zstandard.ZstdCompressor().compress(text.encode())
    for cut in (len(data) // 2, len(data) - 1):
        path = tmp_path / f"cut{cut}.jsonl.zst"
        path.write_bytes(data[:cut])
        for mode in ("error", "skip"):  # skipping malformed lines must not hide a truncated file
            with pytest.raises(CorpusError, match=rf"^{re.escape(str(path))}: cannot read .*truncated"):
                list(iter_documents([path], ReadPolicy(on_malformed=mode)))


def test_truncated_gz(tmp_path):
    text = _lines([{"text": f"document {i} " * 30} for i in range(3000)])
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(gzip.compress(text.encode())[:-20])
    with pytest.raises(CorpusError, match=rf"^{re.escape(str(path))}: cannot read \(EOFError"):
        list(iter_documents([path]))


def test_not_zstd_at_all(tmp_path):
    path = tmp_path / "fake.jsonl.zst"
    path.write_bytes(b'{"text": "plain json in a .zst file"}\n')
    with pytest.raises(CorpusError, match=rf"^{re.escape(str(path))}: cannot read \(ZstdError"):
        list(iter_documents([path]))


def test_invalid_utf8(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(_lines(DOCS[:1]).encode() + '{"text": "caf\u00e9"}\n'.encode("latin-1"))
    # The file, the line and the byte offset in the (decompressed) stream of the bad byte.
    with pytest.raises(CorpusError, match=rf"^{re.escape(str(path))}:2: invalid UTF-8 at byte offset 79"):
        list(iter_documents([path]))
