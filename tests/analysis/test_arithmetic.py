"""Arithmetic term-frequency tasks: documents, an lm-eval run, per-x1 accuracy, Δ and the report."""

from __future__ import annotations

import json
import math
import re

import pandas as pd
import pytest

from pythia_repro.analysis.arithmetic import (
    delta_stats,
    per_x1_accuracy,
    task_name,
    term_frequency_report,
    write_arithmetic_tasks,
)
from pythia_repro.analysis.term_frequency import merge_parts, write_counts, write_part


def _docs(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_documents_demonstrations_answers_and_layout(tmp_path):
    info = write_arithmetic_tasks(tmp_path, ops=("plus", "times"), shots=(0, 4), x1_values=range(100),
                                  x2_per_x1=2, seed=7)
    assert info["tasks"] == ["arithmetic_plus_0shot", "arithmetic_plus_4shot", "arithmetic_times_0shot",
                             "arithmetic_times_4shot"]
    for name in info["tasks"]:
        assert (tmp_path / f"{name}.yaml").is_file()
        docs = _docs(tmp_path / f"{name}.jsonl")
        assert len(docs) == 200 == info[name]["documents"]
        assert sorted({d["x1"] for d in docs}) == list(range(100))
        for d in docs:
            word = {"plus": "plus", "times": "times"}[d["op"]]
            y = d["x1"] + d["x2"] if d["op"] == "plus" else d["x1"] * d["x2"]
            assert d["answer"] == y and d["target"] == str(y)
            blocks = d["prompt"].split("\n\n")
            assert len(blocks) == d["k"] + 1
            assert blocks[-1] == f"Q:What is {d['x1']} {word} {d['x2']}? A:"
            assert d["x1"] not in d["demo_x1"]
            for block, demo_x1 in zip(blocks[:-1], d["demo_x1"], strict=True):
                q, a = block.split(" A:")
                x1, x2 = (int(v) for v in q.removeprefix("Q:What is ").removesuffix("?").split(f" {word} "))
                assert x1 == demo_x1 != d["x1"] and 1 <= x2 <= 50
                assert a == str(x1 + x2 if d["op"] == "plus" else x1 * x2)  # no space before the answer
    again = tmp_path / "again"
    write_arithmetic_tasks(again, ops=("plus", "times"), shots=(0, 4), x2_per_x1=2, seed=7)
    name = "arithmetic_times_4shot.jsonl"
    assert (again / name).read_text() == (tmp_path / name).read_text()
    with pytest.raises(ValueError, match="outside"):
        write_arithmetic_tasks(tmp_path / "bad", x1_values=[100])


def test_per_x1_accuracy_aggregates_samples():
    samples = []
    for x1, outcomes in {3: [1, 0, 1], 5: [0, 0]}.items():
        for i, c in enumerate(outcomes):
            doc = {"op": "plus", "k": 0, "x1": x1, "x2": i + 1}
            samples.append(("arithmetic_plus_0shot", {"doc": doc, "filter": "first_number", "exact_match": float(c)}))
            samples.append(("arithmetic_plus_0shot", {"doc": doc, "filter": "other", "exact_match": 1.0}))
    frame = per_x1_accuracy(samples).set_index("x1")
    assert frame.loc[3, "n"] == 3 and frame.loc[3, "correct"] == 2 and frame.loc[3, "accuracy"] == pytest.approx(2 / 3)
    assert frame.loc[5, "n"] == 2 and frame.loc[5, "correct"] == 0


def test_lm_eval_run_scores_the_first_number(tmp_path):
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast

    from pythia_repro.data.tokenizer import train_bpe

    tasks_dir = tmp_path / "tasks"
    info = write_arithmetic_tasks(tasks_dir, ops=("plus",), shots=(0, 2), x1_values=[0, 1, 2, 3], x2_values=[1, 2],
                                  seed=1)
    texts = [d["prompt"] + d["target"] for name in info["tasks"] for d in _docs(tasks_dir / f"{name}.jsonl")]
    bpe = train_bpe(texts * 3, vocab_size=400)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|padding|>")
    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=bpe.get_vocab_size(), hidden_size=32, num_hidden_layers=1,
                                             num_attention_heads=2, intermediate_size=64, max_position_embeddings=256,
                                             eos_token_id=bpe.token_to_id("<|endoftext|>")))
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)

    lm = HFLM(pretrained=str(model_dir), batch_size=8, device="cpu")
    results = simple_evaluate(model=lm, tasks=info["tasks"], num_fewshot=0, log_samples=True,
                              task_manager=TaskManager(include_defaults=False, include_path=str(tasks_dir)))
    samples = [(t, s) for t in info["tasks"] for s in results["samples"][t]]
    assert len(samples) == 16
    for _, s in samples:
        # the regex filter keeps the first 1-5 digit run; exact_match compares it with the answer
        first = re.findall(r"\d{1,5}", s["resps"][0][0])
        assert s["filtered_resps"][0] == (first[0] if first else "[none]")
        assert s["exact_match"] == float(s["filtered_resps"][0] == str(s["doc"]["answer"]))
        assert s["arguments"][0][1]["until"] == ["\n"] and s["arguments"][0][1]["max_gen_toks"] == 16
        assert s["arguments"][0][0] == s["doc"]["prompt"]
    acc = per_x1_accuracy(samples)
    assert acc["n"].sum() == 16 and set(acc["task"]) == set(info["tasks"])
    for name in info["tasks"]:
        expected = results["results"][name]["exact_match,first_number"]
        sub = acc[acc["task"] == name]
        assert sub["correct"].sum() / sub["n"].sum() == pytest.approx(expected)


def test_delta_stats_null_has_a_real_interval():
    s = delta_stats((0, 100), (0, 100))
    assert s["delta"] == 0 and s["se"] == 0
    assert s["ci_low"] < 0 < s["ci_high"] and s["ci_high"] - s["ci_low"] > 0.05
    g = delta_stats((90, 100), (10, 100))
    assert g["delta"] == pytest.approx(0.8) and g["ci_low"] > 0.6
    assert g["se"] == pytest.approx(math.sqrt(2 * 0.09 / 100))


def test_report_writes_delta_summary_and_figures(tmp_path):
    # counts: x1 = i occurs i * 10 times by step 2 and i * 30 by step 4
    parts = []
    for a, b, mult in [(0, 2, 10), (2, 4, 20)]:
        path = tmp_path / f"part-{a}-{b}.parquet"
        write_part(path, {str(i): i * mult for i in range(1, 100)} | {"0": 1}, a, b)
        parts.append(path)
    counts = tmp_path / "counts.parquet"
    write_counts(counts, merge_parts(parts, [2, 4]))
    rows = []
    for model in ("m-small", "m-big"):
        for step in (2, 4):
            for x1 in range(100):
                correct = int(model == "m-big" and step == 4 and x1 >= 50) * 4
                rows.append({"model": model, "step": step, "op": "plus", "k": 0, "x1": x1, "n": 4, "correct": correct,
                             "accuracy": correct / 4, "task": task_name("plus", 0)})
    meta = {"m-small": {"data": "standard", "label": "small", "params": 1}, "m-big": {"data": "standard", "params": 2}}
    summary = term_frequency_report({"standard": counts}, pd.DataFrame(rows), meta, tmp_path / "report", suite="test")
    delta = pd.read_csv(tmp_path / "report" / "delta.csv")
    assert len(delta) == 4
    big = delta[(delta["model"] == "m-big") & (delta["step"] == 4)].iloc[0]
    assert big["delta"] == 1.0 and big["excludes_zero"] and big["n_top"] == 40
    small = delta[(delta["model"] == "m-small") & (delta["step"] == 4)].iloc[0]
    assert small["delta"] == 0 and not small["excludes_zero"] and small["ci_low"] < 0 < small["ci_high"]
    verdicts = {f["model"]: f["verdict"] for f in summary["final_step"]}
    assert verdicts == {"m-big": "gap (CI excludes 0)", "m-small": "null (CI includes 0)"}
    for name in summary["files"]:
        assert (tmp_path / "report" / name).stat().st_size > 0
    assert {"accuracy_vs_frequency_plus_0shot.png", "delta_plus_0shot.png"} <= set(summary["files"])
