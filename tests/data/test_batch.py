"""The batch viewer: tokens of any step, from index maps or a pre-shuffled file, and locate.

The reference for every sample is the stream itself: the documents concatenated in doc_idx
order, sample i = stream[i*S : i*S + S + 1], training sample j = sample shuffle_idx[j], step t =
training samples [t*B, (t+1)*B). Token files are built with IndexedDatasetBuilder.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from pythia_repro.cli import main
from pythia_repro.data.batch import PreshuffledOrder, TrainingOrder
from pythia_repro.data.indexed import IndexedDatasetBuilder

SEQ, BATCH, SEED = 16, 4, 1234


def _write_tokens(prefix, docs, dtype=np.uint16) -> None:
    with IndexedDatasetBuilder(f"{prefix}.bin", dtype) as builder:
        for doc in docs:
            builder.add_document(np.asarray(doc))
        builder.finalize(f"{prefix}.idx")


@pytest.fixture()
def corpus(tmp_path):
    """150 documents: empty ones, one-token ones, ones spanning several samples; ~3.5k tokens."""
    rs = np.random.default_rng(11)
    docs = []
    for k in range(150):
        n = [0, 1, int(rs.integers(2, 20)), int(rs.integers(20, 90))][k % 4]
        docs.append(rs.integers(0, 50_000, n, dtype=np.int64))
    prefix = tmp_path / "tok"
    _write_tokens(prefix, docs)
    return prefix, docs


def _order_args(prefix, train_iters):
    return ["--data-prefix", str(prefix), "--train-iters", str(train_iters), "--global-batch-size",
            str(BATCH), "--seq-length", str(SEQ), "--seed", str(SEED)]


def _stream_reference(docs, doc_idx, shuffle_idx):
    stream = np.concatenate([docs[d] for d in np.asarray(doc_idx)]).astype(np.int64)
    n = (len(stream) - 1) // SEQ

    def sample(j):
        i = int(shuffle_idx[j])
        return stream[i * SEQ : i * SEQ + SEQ + 1]

    return stream, n, sample


@pytest.mark.parametrize("train_iters", [20, 500])  # one epoch; several epochs
def test_cli_order_then_batch_equals_stream(corpus, tmp_path, capsys, train_iters) -> None:
    prefix, docs = corpus
    assert main(["order", *_order_args(prefix, train_iters)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["num_samples"] >= summary["num_samples_requested"] == int(np.ceil(train_iters * BATCH * 1.005))
    assert (summary["num_epochs"] > 1) == (train_iters == 500)

    order = TrainingOrder(prefix, train_iters, BATCH, SEQ, SEED)
    stream, n, sample = _stream_reference(docs, order.doc_idx, order.shuffle_idx)
    assert n == summary["num_samples"] == len(order.sample_idx) - 1
    assert len(order) == n - 1  # GPT2Dataset.__len__
    assert order.num_steps == (n - 1) // BATCH
    for j in range(len(order)):
        np.testing.assert_array_equal(order.sample(j), sample(j))
    for i in range(n):
        np.testing.assert_array_equal(order.unshuffled_sample(i), stream[i * SEQ : i * SEQ + SEQ + 1])

    for step in [0, 1, train_iters - 1]:
        out = tmp_path / f"step{step}.npy"
        assert main(["batch", *_order_args(prefix, train_iters), "--step", str(step), "--output", str(out)]) == 0
        tokens = np.load(out)
        assert tokens.shape == (BATCH, SEQ + 1) and tokens.dtype == np.int64
        expected = np.stack([sample(j) for j in range(step * BATCH, (step + 1) * BATCH)])
        np.testing.assert_array_equal(tokens, expected)
        np.testing.assert_array_equal(order.batch(step), expected)


def test_consecutive_samples_share_boundary_token(corpus) -> None:
    prefix, _ = corpus
    order = TrainingOrder(prefix, 20, BATCH, SEQ, SEED, build=True)
    for i in range(len(order.sample_idx) - 2):
        assert order.unshuffled_sample(i)[-1] == order.unshuffled_sample(i + 1)[0]


def test_locate_sample_and_training_index(corpus, capsys) -> None:
    prefix, _ = corpus
    order = TrainingOrder(prefix, 20, BATCH, SEQ, SEED, build=True)
    for i in [0, 1, 57, len(order.sample_idx) - 2]:
        loc = order.locate_sample(i)
        assert int(order.shuffle_idx[loc.training_index]) == i
        assert (loc.step, loc.position) == divmod(loc.training_index, BATCH)
        if loc.training_index < len(order):
            np.testing.assert_array_equal(order.batch(loc.step)[loc.position], order.unshuffled_sample(i))
    inv = order.inverse_shuffle()
    np.testing.assert_array_equal(np.asarray(order.shuffle_idx)[inv], np.arange(len(inv)))
    assert order.step_of(9) == (2, 1)
    with pytest.raises(IndexError):
        order.locate_sample(len(order.sample_idx) - 1)

    assert main(["locate", *_order_args(prefix, 20), "--sample", "5", "57", "--training-sample", "9"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["training_samples"] == [{"training_index": 9, "sample_index": int(order.shuffle_idx[9]),
                                           "step": 2, "position": 1, "trained": True}]
    for entry, i in zip(result["samples"], [5, 57], strict=True):
        assert entry["sample_index"] == i and int(order.shuffle_idx[entry["training_index"]]) == i
        assert entry["trained"] == (entry["step"] < 20)


def test_locate_document_matches_stream(corpus, capsys) -> None:
    prefix, docs = corpus
    order = TrainingOrder(prefix, 500, BATCH, SEQ, SEED, build=True)  # several epochs
    sizes = np.array([len(d) for d in docs])
    starts = np.concatenate([[0], np.cumsum(sizes[np.asarray(order.doc_idx)])])
    n = len(order.sample_idx) - 1
    for d in [0, 1, 2, 3, 7, 43]:
        entries = order.locate_document(d)
        expected = []
        for pos in np.flatnonzero(np.asarray(order.doc_idx) == d):
            begin, end = int(starts[pos]), int(starts[pos] + sizes[d])
            for i in range(n):  # samples overlapping [begin, end) in the stream
                lo, hi = max(begin, i * SEQ), min(end, i * SEQ + SEQ + 1)
                if lo < hi:
                    expected.append((int(pos), [lo - begin, hi - begin], i))
        assert [(e["doc_idx_position"], e["document_tokens"], e["sample_index"]) for e in entries] == expected
        for e in entries:
            assert int(order.shuffle_idx[e["training_index"]]) == e["sample_index"]
            sample = order.unshuffled_sample(e["sample_index"])
            b, t = e["document_tokens"]
            assert docs[d][b:t].tolist() in [sample[k : k + t - b].tolist() for k in range(SEQ + 2 - (t - b))]
        assert (entries == []) == (sizes[d] == 0)
    assert main(["locate", *_order_args(prefix, 500), "--document", "3"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["documents"][0]["document"] == 3 and result["documents"][0]["size"] == len(docs[3])
    assert len(result["documents"][0]["samples"]) == len(order.locate_document(3))


def test_preshuffled_file_gives_the_same_batches(corpus, tmp_path, capsys) -> None:
    prefix, _ = corpus
    order = TrainingOrder(prefix, 20, BATCH, SEQ, SEED, build=True)
    pre = tmp_path / "document"
    _write_tokens(pre, [order.sample(j) for j in range(len(order))])
    shuffled = PreshuffledOrder(pre, BATCH)
    assert shuffled.seq_length == SEQ and len(shuffled) == len(order) and shuffled.num_steps == order.num_steps
    for step in range(order.num_steps):
        np.testing.assert_array_equal(shuffled.batch(step), order.batch(step))
        assert shuffled.batch(step).dtype == np.int64
    np.testing.assert_array_equal(shuffled[5], order[5])

    out = tmp_path / "b.npy"
    assert main(["batch", "--preshuffled", "--data-prefix", str(pre), "--global-batch-size", str(BATCH),
                 "--step", "3", "--output", str(out)]) == 0
    np.testing.assert_array_equal(np.load(out), order.batch(3))
    assert main(["locate", "--preshuffled", "--data-prefix", str(pre), "--global-batch-size", str(BATCH),
                 "--training-sample", "13"]) == 0
    assert json.loads(capsys.readouterr().out)["training_samples"] == [
        {"training_index": 13, "sample_index": None, "step": 3, "position": 1}]

    with pytest.raises(ValueError, match="seq_length"):
        PreshuffledOrder(pre, BATCH, seq_length=SEQ + 1)
    _write_tokens(tmp_path / "uneven", [np.arange(17), np.arange(16)])
    with pytest.raises(ValueError, match="differ"):
        PreshuffledOrder(tmp_path / "uneven", BATCH)


def test_orders_pickle_by_path(corpus, tmp_path) -> None:
    prefix, _ = corpus
    order = TrainingOrder(prefix, 20, BATCH, SEQ, SEED, build=True)
    blob = pickle.dumps(order)
    assert len(blob) < 2000  # arguments, not arrays
    np.testing.assert_array_equal(pickle.loads(blob).batch(2), order.batch(2))
    pre = tmp_path / "document"
    _write_tokens(pre, [order.sample(j) for j in range(8)])
    again = pickle.loads(pickle.dumps(PreshuffledOrder(pre, BATCH)))
    np.testing.assert_array_equal(again.batch(1), order.batch(1))


def test_cli_errors_name_the_problem(corpus, tmp_path, capsys) -> None:
    prefix, _ = corpus
    assert main(["batch", *_order_args(prefix, 20), "--step", "0", "--output", str(tmp_path / "x.npy")]) == 2
    assert "pythia-repro order" in capsys.readouterr().err  # maps not built yet
    assert main(["order", *_order_args(prefix, 20)]) == 0
    assert main(["batch", *_order_args(prefix, 20), "--step", "100000", "--output", str(tmp_path / "x.npy")]) == 2
    assert "training never reached it" in capsys.readouterr().err  # past train_iters
    assert main(["batch", *_order_args(prefix, 20), "--step", "100000", "--allow-untrained",
                 "--output", str(tmp_path / "x.npy")]) == 2
    assert "out of range" in capsys.readouterr().err  # past the order itself
    assert main(["batch", "--data-prefix", str(prefix), "--global-batch-size", "4", "--step", "0",
                 "--output", str(tmp_path / "x.npy")]) == 2
    assert "--train-iters" in capsys.readouterr().err
    assert main(["batch", *_order_args(prefix, 20), "--step", "0"]) == 2
    assert main(["locate", *_order_args(prefix, 20)]) == 2
    assert not (tmp_path / "x.npy").exists()


def test_decode_prints_text(tmp_path, capsys, neox_tokenizer_path) -> None:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(neox_tokenizer_path))
    texts = ["The quick brown fox jumps over the lazy dog. " * 3, "Pythia was trained on the Pile.", ""]
    docs = [np.array(tok.encode(t).ids + [0], dtype=np.int64) for t in texts * 6]
    prefix = tmp_path / "text"
    _write_tokens(prefix, docs)
    assert main(["order", *_order_args(prefix, 2)]) == 0
    capsys.readouterr()
    assert main(["batch", *_order_args(prefix, 2), "--step", "1", "--decode", str(neox_tokenizer_path)]) == 0
    out = capsys.readouterr().out
    rows = TrainingOrder(prefix, 2, BATCH, SEQ, SEED).batch(1)
    assert out.count("=====") == 2 * BATCH
    for row in rows:
        assert tok.decode(row.tolist(), skip_special_tokens=False) in out
