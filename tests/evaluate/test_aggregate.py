"""Aggregation: evaluation records -> tidy CSV/Parquet and one figure per task x n-shot."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pandas as pd
import pytest

from pythia_repro.config import load_suite
from pythia_repro.evaluate.aggregate import COLUMNS, aggregate, expected_records, figure_name, rows_from_record

SIZES = {"pico": 1, "nano": 2}


def record(model: str, size: str, data: str, step: int, shots=(0,), arch="gpt-neox") -> dict:
    """An evaluation record as `pythia-repro evaluate` writes it (harness dict per n-shot)."""
    runs = []
    for n in shots:
        acc = min(1.0, 0.1 * SIZES[size] + step / 100 + (0.05 if data == "deduped" else 0) + 0.01 * n)
        runs.append({
            "num_fewshot": n,
            "results": {
                "lambada_heldout": {"alias": "lambada_heldout", "sample_len": 30,
                                    "perplexity,none": 1000.0 / (1 + step), "perplexity_stderr,none": 10.0,
                                    "acc,none": acc, "acc_stderr,none": 0.02},
                "piqa": {"alias": "piqa", "acc,none": 0.5 + step / 1000, "acc_stderr,none": "N/A",
                         "acc_norm,none": 0.55, "acc_norm_stderr,none": 0.01},
            },
            "n-shot": {"lambada_heldout": n, "piqa": n},
            "versions": {"lambada_heldout": 1.0, "piqa": 1.0},
            "configs": {}, "higher_is_better": {}, "n-samples": {},
        })
    meta = {"model": model, "size": size, "arch": arch, "data": data, "seed": 1234, "intervention": None,
            "step": step, "tokens_seen": step * 2 * 32}
    return {"metadata": meta, "runs": runs}


def test_rows_are_tidy():
    rows = rows_from_record(record("pythia-pico", "pico", "standard", 4, shots=(0, 5)))
    assert len(rows) == 2 * (2 + 2)  # 2 n-shots x (lambada: acc, ppl; piqa: acc, acc_norm)
    acc = next(r for r in rows if r["task"] == "lambada_heldout" and r["metric"] == "acc" and r["num_fewshot"] == 5)
    assert acc["stderr"] == 0.02 and acc["tokens_seen"] == 256 and acc["dataset"] == "standard"
    piqa = next(r for r in rows if r["task"] == "piqa" and r["metric"] == "acc")
    assert math.isnan(piqa["stderr"])  # the harness's "N/A"
    with pytest.raises(ValueError, match="not a pythia-repro evaluation record"):
        rows_from_record({"results": {}}, "x.json")


def test_tables_and_figures(tmp_path):
    paths = []
    for size, name in (("pico", "pythia-pico"), ("nano", "pythia-nano")):
        for data in ("standard", "deduped"):
            model = name + ("-deduped" if data == "deduped" else "")
            for step in (0, 1, 2, 4, 8):
                path = tmp_path / "eval" / model / f"step{step}.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(record(model, size, data, step)))
                paths.append(path)
    csv, parquet, figures = tmp_path / "results.csv", tmp_path / "results.parquet", tmp_path / "figures"
    frame, written = aggregate(paths, csv=csv, parquet=parquet, figures_dir=figures)
    assert list(frame.columns) == COLUMNS and len(frame) == 20 * 4
    from_csv, from_parquet = pd.read_csv(csv), pd.read_parquet(parquet)
    assert len(from_csv) == len(from_parquet) == 80
    pd.testing.assert_frame_equal(from_parquet, frame)
    point = from_parquet.query("model == 'pythia-nano-deduped' and step == 8 and task == 'lambada_heldout' "
                               "and metric == 'acc'")
    assert point["value"].item() == pytest.approx(0.2 + 0.08 + 0.05)
    assert sorted(p.name for p in written) == ["lambada_heldout_0shot.png", "piqa_0shot.png"]
    for png in written:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_cli_reads_the_suites_records_and_names_figures_by_config(tmp_path):
    cfg = {
        "suite": "agg", "results_dir": str(tmp_path / "results"),
        "corpus": {"source": "synthetic", "synthetic": {"num_shards": 1}},
        "tokenizer": {"source": "train"}, "data": {"seq_length": 32},
        "sizes": {"pico": {"layers": 1, "d_model": 32, "heads": 4, "ffn": 64, "lr": 1e-3, "min_lr": 1e-4}},
        "models": [{"size": "pico"}],
        "training": {"train_iters": 8, "global_batch_size": 2, "checkpoints": {"log_spaced_until": 4, "every": 4}},
        "evaluate": {"steps": [0, 8], "tasks": ["lambada_heldout", "piqa"], "num_fewshot": [0, 5]},
    }
    config = tmp_path / "agg.yaml"
    config.write_text(json.dumps(cfg))
    suite = load_suite(config)
    eval_dir = tmp_path / "eval"
    for path in expected_records(suite, eval_dir):
        model, step = path.parent.name, int(path.stem[4:])
        data = "deduped" if model.endswith("deduped") else "standard"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record(model, "pico", data, step, shots=(0, 5))))
    result = subprocess.run(
        [sys.executable, "-m", "pythia_repro.cli", "aggregate-eval", "--config", str(config), "--eval-dir",
         str(eval_dir), "--csv", str(tmp_path / "r.csv"), "--figures-dir", str(tmp_path / "fig")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["records"] == 4
    expected = {figure_name(t, n) for t in ("lambada_heldout", "piqa") for n in (0, 5)}
    assert {p.name for p in (tmp_path / "fig").iterdir()} == expected

    (eval_dir / "pythia-pico" / "step8.json").unlink()
    missing = subprocess.run(
        [sys.executable, "-m", "pythia_repro.cli", "aggregate-eval", "--config", str(config), "--eval-dir",
         str(eval_dir), "--csv", str(tmp_path / "r.csv")],
        capture_output=True, text=True, timeout=300,
    )
    assert missing.returncode == 2 and "pythia-pico/step8.json: evaluation record not found" in missing.stderr


def test_line_labels_ignore_missing_values() -> None:
    # Rows read back through pandas carry NaN, not None, where a model has no intervention.
    from pythia_repro.evaluate.aggregate import _line_label

    nan = float("nan")
    assert _line_label({"dataset": "standard", "arch": "gpt-neox", "intervention": nan}) == "standard"
    assert _line_label({"dataset": "deduped", "arch": nan, "intervention": "gender_swap"}) == "deduped + gender_swap"
    assert _line_label({"dataset": "deduped", "arch": "llama", "intervention": None}) == "deduped (llama)"
