"""Evaluation of an exported checkpoint: our lambada_heldout task, the `evaluate` verb (all tasks x
n-shots in one job, the harness's results plus our metadata), and the plain `lm_eval --model hf`
command on the same directory giving the same answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pythia_repro.config import load_suite
from pythia_repro.evaluate.aggregate import aggregate
from pythia_repro.evaluate.run import evaluate_checkpoint
from pythia_repro.evaluate.suite_tasks import lambada_item, task_manager, write_task_dir
from pythia_repro.layout import Layout

LM_EVAL = Path(sys.executable).parent / "lm_eval"


def offline_env() -> dict:
    return dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                TOKENIZERS_PARALLELISM="false")


@pytest.mark.parametrize(("text", "expected"), [
    ("He put the bracelet on the table. It was signed by David",) * 2,
    ("She went straight to bed.\n", "She went straight to bed"),
    ("Line one.\n\nThe letter was from Laura.\"", "Line one.\n\nThe letter was from Laura"),
    ("The answer is 42.", None),  # the last word must contain a letter
    ("Alone", None),  # no context
    ("", None),
])
def test_lambada_item_splits_off_the_last_word(text, expected):
    item = lambada_item(text)
    assert (item["text"] if item else None) == expected
    if item:  # lambada_openai's own split recovers context and target
        context, target = " ".join(item["text"].split(" ")[:-1]), item["text"].split(" ")[-1]
        assert context + " " + target == item["text"] and target.isalpha()


def test_task_dir_is_per_suite_and_loads_offline(eval_suite):
    _, suite, _, tasks_dir = eval_suite
    info = json.loads((tasks_dir / "lambada_heldout.json").read_text())
    source = Layout(suite.root).heldout_file
    assert info["sources"] == [str(source)] and info["documents"] == 30
    task = yaml.safe_load((tasks_dir / "lambada_heldout.yaml").read_text())
    assert task["dataset_kwargs"]["data_files"]["test"] == str((tasks_dir / "lambada_heldout.jsonl").resolve())
    manager = task_manager(["lambada_heldout"], tasks_dir)
    loaded = manager.load(["lambada_heldout"])["tasks"]
    (task_obj,) = loaded.values()
    docs = list(task_obj.test_docs())
    assert len(docs) == 30
    assert task_obj.doc_to_target(docs[0]) == " " + docs[0]["text"].split(" ")[-1]


def test_files_corpus_without_heldout_files_is_a_clear_error(eval_suite, tmp_path):
    config, *_ = eval_suite
    cfg = yaml.safe_load(Path(config).read_text())
    cfg["corpus"] = {"source": "files", "files": [str(tmp_path / "a.jsonl")]}
    with pytest.raises(ValueError, match="corpus.heldout_files is empty"):
        write_task_dir(load_suite(cfg), tmp_path / "tasks")


def _lm_eval_cli(model_dir: Path, tasks_dir: Path, out: Path, batch_size: int) -> dict:
    """The harness's own command line on our exported directory; returns its results JSON."""
    cmd = [str(LM_EVAL), "--model", "hf", "--model_args", f"pretrained={model_dir}", "--tasks", "lambada_heldout",
           "--include_path", str(tasks_dir), "--device", "cpu", "--batch_size", str(batch_size),
           "--output_path", str(out), "--log_samples"]
    result = subprocess.run(cmd, env=offline_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    (results,) = out.rglob("results_*.json")
    (samples,) = out.rglob("samples_lambada_heldout_*.jsonl")
    return {"results": json.loads(results.read_text()),
            "samples": [json.loads(line) for line in samples.read_text().splitlines()]}


@pytest.mark.slow  # our verb and the lm_eval CLI, each a fresh interpreter importing lm_eval
def test_evaluate_verb_matches_the_lm_eval_cli(eval_suite, tmp_path):
    config, suite, model_dir, tasks_dir = eval_suite
    out, samples = tmp_path / "step8.json", tmp_path / "samples.jsonl"
    ours = subprocess.run(
        [sys.executable, "-m", "pythia_repro.cli", "evaluate", "--config", str(config), "--model", "pythia-pico",
         "--step", "8", "--input", str(model_dir), "--tasks-dir", str(tasks_dir), "--output", str(out),
         "--samples", str(samples)],
        env=offline_env(), capture_output=True, text=True, timeout=600,
    )
    assert ours.returncode == 0, ours.stderr[-4000:]
    record = json.loads(out.read_text())
    meta = record["metadata"]
    assert (meta["model"], meta["size"], meta["data"], meta["step"]) == ("pythia-pico", "pico", "standard", 8)
    assert meta["tokens_seen"] == 8 * suite.global_batch_size * suite.seq_length
    assert meta["documents"] == 30 and meta["documents_per_second"] > 0
    (run,) = record["runs"]
    for key in ("results", "versions", "n-shot", "configs", "higher_is_better", "n-samples", "config"):
        assert key in run, key
    assert run["n-shot"]["lambada_heldout"] == 0 and run["num_fewshot"] == 0
    ours_results = run["results"]["lambada_heldout"]
    assert {"acc,none", "perplexity,none", "acc_stderr,none", "perplexity_stderr,none"} <= set(ours_results)

    theirs = _lm_eval_cli(model_dir, tasks_dir, tmp_path / "lm_eval_out",
                          batch_size=suite.config["evaluate"]["batch_size"])
    theirs_results = theirs["results"]["results"]["lambada_heldout"]
    for metric in ("acc,none", "perplexity,none", "acc_stderr,none", "perplexity_stderr,none"):
        assert ours_results[metric] == theirs_results[metric], metric
    ours_samples = {s["doc_id"]: s for s in map(json.loads, samples.read_text().splitlines())}
    assert len(ours_samples) == len(theirs["samples"]) == 30
    for s in theirs["samples"]:  # the CLI writes (loglikelihood, is_greedy) as strings; we keep numbers
        mine = ours_samples[s["doc_id"]]
        assert [[float(ll), str(g)] for ll, g in s["filtered_resps"]] == \
            [[ll, str(g)] for ll, g in mine["filtered_resps"]]
        assert mine["target"] == s["target"] and mine["acc"] == s["acc"]

    # The record feeds the aggregation (one row per metric).
    frame, _ = aggregate([out])
    assert set(frame["metric"]) == {"acc", "perplexity"}
    assert frame.loc[frame["metric"] == "perplexity", "value"].item() == ours_results["perplexity,none"]


def test_all_fewshot_settings_in_one_job(eval_suite, tmp_path):
    config, _, model_dir, tasks_dir = eval_suite
    cfg = yaml.safe_load(Path(config).read_text())
    cfg["evaluate"].update(num_fewshot=[0, 2], limit=6)
    suite = load_suite(cfg)
    record = evaluate_checkpoint(suite, "pythia-pico", 8, model_dir, tmp_path / "out.json", tasks_dir=tasks_dir)
    assert [r["num_fewshot"] for r in record["runs"]] == [0, 2]
    assert [r["n-shot"]["lambada_heldout"] for r in record["runs"]] == [0, 2]
    assert record["metadata"]["documents"] == 12
    assert json.loads((tmp_path / "out.json").read_text())["metadata"]["num_fewshot"] == [0, 2]


def test_evaluate_refuses_an_export_of_another_checkpoint(eval_suite, tmp_path):
    _, suite, model_dir, tasks_dir = eval_suite
    with pytest.raises(ValueError, match="expected pythia-pico step 4"):
        evaluate_checkpoint(suite, "pythia-pico", 4, model_dir, tmp_path / "out.json", tasks_dir=tasks_dir)
