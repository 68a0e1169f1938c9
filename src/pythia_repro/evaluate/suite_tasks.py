"""Our own offline lm_eval tasks, written per suite because their data paths are the suite's.

`lambada_heldout`: LAMBADA-style last-word prediction on the corpus's held-out documents
(the synthetic corpus's `{ROOT}/data/corpus/heldout.jsonl`, or `corpus.heldout_files` for a
real corpus). Each document becomes one item: the context is everything before its final
word, the target is that word (trailing punctuation dropped), exactly as lambada_openai
splits its texts. The task directory holds:

    lambada_heldout.yaml     the template from this package with the paths filled in
    lambada_heldout.jsonl    {"text": context + " " + word} per usable document
    lambada_heldout.json     provenance: source files, counts, sha256 of the data
    harness_tasks.json       where each requested harness task's YAML lives

Indexing all of the harness's ~200 task folders takes ~30 s per process, so the index is built
once here (one DAG job) and every evaluation job indexes only the folders its tasks live in.
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources
from pathlib import Path

from pythia_repro.atomic import atomic_dir, write_json
from pythia_repro.errors import PythiaReproError

HELDOUT_TASK = "lambada_heldout"
OWN_TASKS = (HELDOUT_TASK,)
_TRAILING = re.compile(r"[\s.,;:!?\"'”’)\]»…-]+$")
_WORD = re.compile(r"[^\W\d_]")  # contains a letter


def heldout_sources(suite) -> list[Path]:
    if suite.corpus.source == "synthetic":
        return [suite.layout.heldout_file]
    return [Path(f) for f in suite.corpus.heldout_files]


def needs_own_tasks(suite) -> list[str]:
    return [t for t in suite.evaluate.tasks if t in OWN_TASKS]


def lambada_item(text: str) -> dict | None:
    """{"text": context + " " + last word}, or None when the document has no usable last word."""
    body = _TRAILING.sub("", text.rstrip())
    if not body:
        return None
    cut = max(body.rfind(" "), body.rfind("\n"), body.rfind("\t"))
    if cut <= 0:
        return None
    context, word = body[:cut].rstrip(), body[cut + 1 :]
    if not context or not word or not _WORD.search(word) or " " in word:
        return None
    return {"text": f"{context} {word}"}


def _template() -> str:
    return resources.files("pythia_repro.evaluate").joinpath(f"tasks/{HELDOUT_TASK}.yaml").read_text()


HARNESS_INDEX = "harness_tasks.json"


def resolve_harness_tasks(tasks: list[str]) -> dict[str, str | None]:
    """Folder of each harness task's YAML (None for names without one: tags, python tasks)."""
    from lm_eval.tasks import TaskManager

    index = TaskManager(include_defaults=True).task_index
    found: dict[str, str | None] = {}
    for name in tasks:
        entry = index.get(name)
        if entry is None:
            raise PythiaReproError(f"evaluate.tasks: {name!r} is neither one of ours {list(OWN_TASKS)} "
                             "nor an lm_eval task (see `lm_eval ls tasks`)")
        found[name] = str(Path(entry.yaml_path).parent) if entry.yaml_path else None
    return found


def task_manager(tasks: list[str], tasks_dir: str | Path | None, extra_dirs: list[str | Path] = ()):
    """A TaskManager that knows `tasks`, indexing as little of the harness as it can.

    `tasks_dir` holds our own tasks and the harness index (`eval-tasks`); `extra_dirs` more task
    folders of ours (the offline benchmarks)."""
    from lm_eval.tasks import TaskManager

    own_dirs = [Path(d) for d in ([tasks_dir] if tasks_dir is not None else []) + list(extra_dirs)]
    own = [str(d) for d in own_dirs]
    # Ours are the tasks whose YAML one of our folders holds; the rest come from the harness.
    harness = [t for t in tasks if not any((d / f"{t}.yaml").is_file() for d in own_dirs)]
    if not harness:
        return TaskManager(include_defaults=False, include_path=own or None)
    index_file = Path(tasks_dir) / HARNESS_INDEX if tasks_dir is not None else None
    if index_file is not None and index_file.is_file():
        dirs = json.loads(index_file.read_text())
        if all(dirs.get(t) and Path(dirs[t]).is_dir() for t in harness):
            paths = sorted({dirs[t] for t in harness}) + own
            return TaskManager(include_defaults=False, include_path=paths)
    return TaskManager(include_defaults=True, include_path=own or None)


def write_task_dir(suite, output: str | Path) -> dict:
    """Write the suite's own task definitions and data, and the harness task index, into `output`."""
    output = Path(output)
    tasks = list(suite.evaluate.tasks)
    harness = [t for t in tasks if t not in OWN_TASKS]
    harness_dirs = resolve_harness_tasks(harness) if harness else {}
    with atomic_dir(output) as tmp:
        info = {"tasks": tasks, "harness": harness_dirs}
        if HELDOUT_TASK in tasks:
            info[HELDOUT_TASK] = _write_heldout_task(suite, tmp, output)
        write_json(tmp / HARNESS_INDEX, harness_dirs)
        for path in [tmp, *tmp.iterdir()]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    return info


def _write_heldout_task(suite, tmp: Path, output: Path) -> dict:
    from pythia_repro.data.corpus import iter_documents

    sources = heldout_sources(suite)
    if not sources:
        raise PythiaReproError(
            f"{suite.source}: evaluate.tasks has {HELDOUT_TASK} but corpus.heldout_files is empty "
            "(a files corpus needs held-out documents for it)"
        )
    items, skipped = [], 0
    for doc in iter_documents(sources, suite.corpus.read_policy):
        item = lambada_item(doc.text)
        if item is None:
            skipped += 1
            continue
        items.append(item)
    if not items:
        raise PythiaReproError(f"{', '.join(map(str, sources))}: no held-out document with a usable last word")
    data = "".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items).encode()
    # Paths point at the published directory (tmp is renamed to `output` on success).
    data_file = output.resolve() / f"{HELDOUT_TASK}.jsonl"
    (tmp / data_file.name).write_bytes(data)
    yaml_text = (
        _template()
        .replace('"@DATA_FILE@"', json.dumps(str(data_file)))
        .replace('"@CACHE_DIR@"', json.dumps(str(output.resolve() / ".hf-datasets-cache")))
    )
    (tmp / f"{HELDOUT_TASK}.yaml").write_text(yaml_text)
    info = {
        "task": HELDOUT_TASK,
        "sources": [str(s) for s in sources],
        "documents": len(items),
        "skipped": skipped,
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    write_json(tmp / f"{HELDOUT_TASK}.json", info)
    return info
