"""Memorization scoring (equal to HF generate on a really trained model), output contract, Poisson analysis."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from pythia_repro.analysis.memorization import (
    generate_scores,
    load_model,
    merge_slices,
    read_scores,
    score_order,
    score_sequences,
    slice_bounds,
    subset_indices,
    write_scores,
    write_summary,
)
from pythia_repro.analysis.poisson import (
    bin_counts,
    chi_square_gof,
    dispersion_test,
    memorization_report,
    poisson_analysis,
    qq_data,
    rate_by_position,
)
from pythia_repro.train.substitution import Substitution

K = L = 16  # shorter than Pythia's 32 so the in-process training takes seconds; the code is the same
VOCAB = 96


def _sequences(rng: np.random.Generator, n: int, width: int = K + L) -> np.ndarray:
    return rng.integers(2, VOCAB, (n, width))  # no EOD (0) unless placed on purpose


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny GPT-NeoX trained on 8 repeated sequences (one with an EOD in its continuation) among
    fresh random ones, saved with save_pretrained and loaded back with load_model."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    repeated = _sequences(rng, 8)
    repeated[0, K + 5] = 0  # the model learns to predict EOD there; min_length forbids generating it
    cfg = GPTNeoXConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, max_position_embeddings=64, eos_token_id=0, bos_token_id=0)
    model = GPTNeoXForCausalLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(250):
        x = torch.as_tensor(np.concatenate([repeated, _sequences(rng, 8)]))
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = tmp_path_factory.mktemp("model")
    model.save_pretrained(out)
    loaded = load_model(out)
    assert not loaded.training
    # Probes: the repeated sequences, each with its continuation edited at one position (greedy
    # still follows the memorized text: partial scores whose first mismatch is late), with an edited
    # prompt, and unseen random sequences.
    edited = repeated.copy()
    for i in range(len(edited)):
        edited[i, K + 1 + 2 * i] = (edited[i, K + 1 + 2 * i] + 1) % (VOCAB - 2) + 2
    prompt_edit = repeated.copy()
    prompt_edit[:, K - 1] = (prompt_edit[:, K - 1] + 7) % (VOCAB - 2) + 2
    probes = np.concatenate([repeated, edited, prompt_edit, _sequences(rng, 40)])
    return {"model": loaded, "repeated": repeated, "probes": probes}


def test_scores_equal_generate_on_a_trained_model(trained):
    model, probes = trained["model"], trained["probes"]
    ref, ref_mem = generate_scores(model, probes, k=K, l=L, batch_size=64)
    # Memorized, partial with early and late first mismatches, and not memorized at all: all paths run.
    assert ref_mem.sum() >= 4 and (ref == 0).any()
    partial = (ref > 0) & (ref < 1)
    assert partial.sum() >= 8 and len(np.unique(ref[partial])) >= 3
    for batch_size in (64, 7):
        scores, memorized = score_sequences(model, probes, k=K, l=L, batch_size=batch_size)
        assert scores.dtype == np.float32 and memorized.dtype == bool
        np.testing.assert_array_equal(scores, ref)
        np.testing.assert_array_equal(memorized, ref_mem)
    assert set(np.round(ref * L, 6)) <= set(range(L + 1))  # multiples of 1/l


def test_an_eod_in_the_continuation_is_never_memorized(trained):
    model, repeated = trained["model"], trained["repeated"]
    scores, memorized = score_sequences(model, repeated, k=K, l=L)
    ref, _ = generate_scores(model, repeated, k=K, l=L)
    assert not memorized[0] and scores[0] < 1 and ref[0] == scores[0]
    # The model did learn that sequence: without EOD suppression the greedy continuation is exact.
    unmasked, unmasked_mem = score_sequences(model, repeated[:1], k=K, l=L, eod_id=None)
    assert unmasked_mem[0] and unmasked[0] == 1.0


def test_memorized_only_agrees_on_the_flag(trained):
    model, probes = trained["model"], trained["probes"]
    full, memorized = score_sequences(model, probes, k=K, l=L)
    fast, fast_mem = score_sequences(model, probes, k=K, l=L, memorized_only=True, batch_size=13)
    np.testing.assert_array_equal(fast_mem, memorized)
    np.testing.assert_array_equal(fast[memorized], 1.0)
    assert np.isnan(fast[~memorized]).all()


def test_other_prompt_and_continuation_lengths_equal_generate(trained):
    """Chunk boundaries of the staged verification, l = 1, and a row leaving at the last target."""
    model, probes = trained["model"], trained["probes"]
    for k, l in ((K, 1), (5, 11), (9, 23), (3, 29)):  # noqa: E741
        ref, ref_mem = generate_scores(model, probes, k=k, l=l, batch_size=64)
        scores, memorized = score_sequences(model, probes, k=k, l=l, batch_size=29)
        np.testing.assert_array_equal(scores, ref, err_msg=f"k={k}, l={l}")
        np.testing.assert_array_equal(memorized, ref_mem)


def test_rows_leave_at_their_first_mismatch(trained):
    """Token work: unseen rows cost little beyond the prompt in memorized-only mode, and the full
    mode feeds about what generate does (prompt + l - 1 per row; a row leaving inside a chunk of
    true tokens wasted the rest of that chunk)."""
    model, probes = trained["model"], trained["probes"]
    fed = []
    hook = model.register_forward_pre_hook(lambda _m, _a, kw: fed.append(kw["input_ids"].numel()), with_kwargs=True)
    try:
        unseen = _sequences(np.random.default_rng(5), 64)
        score_sequences(model, unseen, k=K, l=L, memorized_only=True)
        assert sum(fed) <= 64 * (K + 4)
        fed.clear()
        score_sequences(model, probes, k=K, l=L)
        assert sum(fed) <= 1.05 * len(probes) * (K + L - 1)
    finally:
        hook.remove()


def test_bad_sequences_are_rejected(trained):
    with pytest.raises(ValueError, match="k \\+ l"):
        score_sequences(trained["model"], np.zeros((3, K + L - 1), np.int64), k=K, l=L)
    scores, memorized = score_sequences(trained["model"], np.zeros((0, K + L), np.int64), k=K, l=L)
    assert scores.shape == memorized.shape == (0,)


class _Order:
    """The part of TrainingOrder / PreshuffledOrder that scoring uses."""

    def __init__(self, samples: np.ndarray) -> None:
        self._samples, self.seq_length = samples, samples.shape[1] - 1
        self.reads: list[tuple[int, int]] = []

    def __len__(self) -> int:
        return len(self._samples)

    def samples(self, start: int, stop: int) -> np.ndarray:
        self.reads.append((start, stop))
        return self._samples[start:stop].astype(np.int64)


def test_slices_merge_to_the_unsliced_result(trained, tmp_path):
    model, probes = trained["model"], trained["probes"]
    order = _Order(np.concatenate([probes, np.ones((len(probes), 5), np.int64)], axis=1))
    idx, scores, memorized = score_order(model, order, np.arange(len(order)), k=K, l=L, batch_size=16,
                                         progress=False)
    ref, ref_mem = score_sequences(model, probes, k=K, l=L)
    np.testing.assert_array_equal(scores, ref)
    np.testing.assert_array_equal(memorized, ref_mem)
    write_scores(tmp_path / "all.parquet", idx, scores, memorized)
    parts = []
    for i in range(3):
        a, b = slice_bounds(len(order), i, 3)
        order.reads.clear()
        part = score_order(model, order, np.arange(a, b), k=K, l=L, batch_size=16, progress=False)
        assert order.reads == [(a, b)]  # a slice is one contiguous read
        write_scores(tmp_path / f"slice{i}.parquet", *part)
        parts.append(tmp_path / f"slice{i}.parquet")
    assert merge_slices(parts[::-1], tmp_path / "merged.parquet") == len(order)
    assert read_scores(tmp_path / "merged.parquet").equals(read_scores(tmp_path / "all.parquet"))
    # Overlapping slices are refused, naming the file.
    write_scores(tmp_path / "overlap.parquet", [5, 6], [0.5, 1.0], [False, True])
    with pytest.raises(ValueError, match="overlap.parquet overlaps"):
        merge_slices(parts + [tmp_path / "overlap.parquet"], tmp_path / "bad.parquet")
    assert not (tmp_path / "bad.parquet").exists()


def test_score_order_applies_the_substitution_and_gathers_subsets(trained):
    model, repeated = trained["model"], trained["repeated"]
    # The stored tokens differ from what the model trained on; the substitution maps them back.
    swap = {int(t): int(t) + 1 for t in range(2, VOCAB - 1, 2)} | {int(t) + 1: int(t) for t in range(2, VOCAB - 1, 2)}
    stored = Substitution(swap, VOCAB)(repeated)
    order = _Order(stored)
    indices = subset_indices(len(order), 5, seed=3)
    assert np.array_equal(indices, subset_indices(len(order), 5, seed=3)) and np.all(np.diff(indices) > 0)
    idx, scores, _ = score_order(model, order, indices, k=K, l=L, substitution=Substitution(swap, VOCAB),
                                 progress=False)
    np.testing.assert_array_equal(idx, indices)
    np.testing.assert_array_equal(scores, score_sequences(model, repeated[indices], k=K, l=L)[0])
    _, unmapped, _ = score_order(model, order, indices, k=K, l=L, progress=False)
    assert unmapped.mean() < scores.mean()


def test_slice_bounds_and_subsets():
    for n in (0, 1, 10, 1001):
        for parts in (1, 3, 8):
            bounds = [slice_bounds(n, i, parts) for i in range(parts)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
            assert max(b - a for a, b in bounds) - min(b - a for a, b in bounds) <= 1
    with pytest.raises(ValueError):
        slice_bounds(10, 3, 3)
    assert np.array_equal(subset_indices(10, None, 0), np.arange(10))
    assert np.array_equal(subset_indices(10, 50, 0), np.arange(10))
    sub = subset_indices(1000, 100, 1)
    assert len(set(sub)) == 100 and not np.array_equal(sub, subset_indices(1000, 100, 2))


def test_output_contract(tmp_path):
    path = tmp_path / "s.parquet"
    write_scores(path, [3, 1, 2], np.array([0.5, 1.0, 0.0], np.float32), [False, True, False])
    t = read_scores(path)
    assert t.schema.field("index").type == pa.int64() and t.schema.field("memorized").type == pa.bool_()
    assert t.schema.field("score").type == pa.float32()
    assert t.column("index").to_pylist() == [1, 2, 3] and t.column("memorized").to_pylist() == [True, False, False]
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"index": pa.array([1], pa.int32()), "score": [1.0], "memorized": [True]}), bad)
    with pytest.raises(ValueError, match="bad.parquet: column 'index' must be int64"):
        read_scores(bad)
    pq.write_table(pa.table({"index": pa.array([1], pa.int64()), "memorized": [True]}), bad)
    with pytest.raises(ValueError, match="bad.parquet: column 'score'.*missing"):
        read_scores(bad)
    with pytest.raises(ValueError, match="duplicate"):
        write_scores(tmp_path / "dup.parquet", [1, 1], [0.0, 1.0], [False, True])
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        read_scores(tmp_path / "nope.parquet")
    summary = write_summary(tmp_path / "s.json", path, k=32, l=32, model="m", step=64, checkpoint="ckpt/step64",
                            planted=np.array([True, False, False]))
    assert json.loads((tmp_path / "s.json").read_text()) == summary
    assert summary["memorized"] == 1 and summary["planted"] == {"sequences": 1, "memorized": 1, "memorized_rate": 1.0}


# ----- Poisson analysis ---------------------------------------------------------------------------


def _poisson_stream(rng, bins: int, rate: float, bin_size: int = 512) -> np.ndarray:
    return rng.random(bins * bin_size) < rate  # independent: counts per bin ~ Binomial ~ Poisson


def _clustered_stream(rng, bins: int, rate: float, bin_size: int = 512) -> np.ndarray:
    """Same overall rate, but memorized sequences come in runs (like repeated documents)."""
    mem = np.zeros(bins * bin_size, bool)
    for start in rng.choice(len(mem) - 20, size=int(len(mem) * rate / 10), replace=False):
        mem[start : start + 10] = True
    return mem


def test_poisson_data_fits_and_clustered_data_does_not():
    rng = np.random.default_rng(5)
    fit = poisson_analysis(_poisson_stream(rng, 200, 0.01))
    assert fit["chi_square"]["p_value"] > 0.01 and fit["dispersion"]["p_value"] > 0.01
    assert 0.7 < fit["dispersion"]["dispersion"] < 1.3
    clustered = poisson_analysis(_clustered_stream(rng, 200, 0.01))
    assert clustered["chi_square"]["p_value"] < 1e-6 and clustered["dispersion"]["p_value"] < 1e-6
    assert clustered["dispersion"]["dispersion"] > 3
    qq = fit["qq"]
    assert qq["observed"] == sorted(fit["counts"]) and len(qq["theoretical"]) == 200
    assert abs(np.mean(qq["theoretical"]) - qq["mean"]) < 0.5  # quantiles of the fitted Poisson


def test_bins_drop_the_partial_tail():
    mem = np.zeros(512 * 3 + 100, bool)
    mem[[0, 1, 600, 1600]] = True
    assert bin_counts(mem).tolist() == [2, 1, 0]
    small = bin_counts(mem, bin_size=100)  # 16 full bins; index 1600 is in the dropped partial one
    assert len(small) == 16 and small[0] == 2 and small[6] == 1 and small.sum() == 3


def test_degenerate_cases_report_a_reason():
    zero = poisson_analysis(np.zeros(5000, bool))
    for test in (zero["chi_square"], zero["dispersion"]):
        assert test["p_value"] is None and "no memorized" in test["reason"]
    one_bin = poisson_analysis(np.ones(600, bool))
    assert one_bin["bins"] == 1 and "fewer than 2 bins" in one_bin["chi_square"]["reason"]
    empty = poisson_analysis(np.zeros(0, bool))
    assert empty["rate"] is None and empty["qq"]["observed"] == [] and empty["position"]["groups"] == []
    assert chi_square_gof(np.array([1, 1, 1]))["p_value"] is None  # one category after pooling
    assert dispersion_test(np.array([2]))["p_value"] is None
    assert qq_data(np.zeros(4, int))["theoretical"] == [0.0] * 4


def test_rate_by_position_sees_a_trend():
    rng = np.random.default_rng(2)
    flat = rate_by_position(rng.random(20000) < 0.05)
    assert abs(flat["slope"]) < 3 * flat["slope_stderr"] and flat["homogeneity"]["p_value"] > 0.01
    rising = rate_by_position(rng.random(20000) < np.linspace(0.0, 0.1, 20000))
    assert rising["slope"] > 10 * rising["slope_stderr"] and rising["homogeneity"]["p_value"] < 1e-6
    assert len(rising["groups"]) == 10 and rising["groups"][-1]["rate"] > rising["groups"][0]["rate"]
    assert all(g["stderr"] > 0 for g in rising["groups"])


def test_memorization_report_writes_summary_table_and_figures(tmp_path):
    rng = np.random.default_rng(3)
    files, meta, planted = {}, {}, {}
    for size in ("nano", "micro"):
        for data, rate in (("standard", 0.03), ("deduped", 0.01)):
            name = f"pythia-{size}" + ("-deduped" if data == "deduped" else "")
            mem = _poisson_stream(rng, 20, rate)
            path = tmp_path / f"{name}.parquet"
            write_scores(path, np.arange(len(mem)), mem.astype(np.float32), mem)
            files[name], meta[name] = path, {"size": size, "data": data}
            planted[name] = np.arange(len(mem)) % 50 == 0
    files["pythia-empty"], meta["pythia-empty"] = tmp_path / "e.parquet", {"size": "x", "data": "standard"}
    write_scores(files["pythia-empty"], [], np.zeros(0, np.float32), np.zeros(0, bool))
    summary = memorization_report(files, meta, tmp_path / "report", bin_size=512, planted=planted, suite="mini")
    out = tmp_path / "report"
    assert json.loads((out / "summary.json").read_text())["standard_vs_deduped"]["nano"]["deduped"]["model"] == \
        "pythia-nano-deduped"
    assert summary["models"]["pythia-nano"]["planted"]["planted"]["sequences"] == 20 * 512 // 50 + 1
    lines = (out / "memorization.csv").read_text().splitlines()
    assert len(lines) == 1 + len(files) and lines[0].startswith("model,size,data,sequences,memorized,rate")
    for png in ("qq.png", "rate_vs_position.png", "planted.png"):
        with Image.open(out / png) as im:
            assert im.format == "PNG" and im.size[0] > 300
