"""Published checkpoints as the directories our evaluation and case studies read.

A published suite (models with `source: hub` or `source: local`) is never trained or exported:
one job per (model, revision) puts revision `step{N}` where an export of our own would be,
`{root}/export/{model}/step{N}`, so every job downstream reads a published checkpoint exactly
as it reads one it trained.

- hub: `huggingface_hub.snapshot_download(repo, revision="step{N}", cache_dir=fetch cache)`, with
  transient errors retried with backoff and the token (HF_TOKEN, if any) never printed; the
  download resumes after a kill and a finished revision is not fetched twice. The checkpoint
  directory then holds hard links to the cached files (no second copy on disk).
- local: a folder of `step{N}/` transformers directories (e.g. a copy of the Hub's branches).

`fetch.cleanup` deletes the cached files of a revision once they are linked, so the checkpoint
directory holds the only copy and Snakemake's temp() removes it after its last reader.
An `export.json` records where the checkpoint came from (repo, revision, commit).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from pythia_repro.atomic import atomic_dir, write_json
from pythia_repro.config import Suite
from pythia_repro.errors import PythiaReproError
from pythia_repro.export.upload import TOKEN_ENV, Redactor, with_retries
from pythia_repro.layout import checkpoint_tag

log = logging.getLogger(__name__)


def _download(repo: str, revision: str, cache_dir: Path, max_retries: int) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    token = os.environ.get(TOKEN_ENV) or None
    try:
        return Path(with_retries(
            lambda: snapshot_download(repo, revision=revision, cache_dir=str(cache_dir), token=token),
            f"snapshot_download {repo}@{revision}", max_retries=max_retries, redact=Redactor(token)))
    except RevisionNotFoundError:
        raise PythiaReproError(f"{repo}: no revision {revision!r} (published suites name their checkpoints "
                               "step{N}; is this step among the repo's branches?)") from None
    except RepositoryNotFoundError:
        raise PythiaReproError(f"{repo}: repository not found (or private without HF_TOKEN)") from None


def _link_tree(source: Path, target: Path) -> list[str]:
    """Hard-link (or copy, across file systems) every file of `source` into `target`."""
    names = []
    for path in sorted(source.rglob("*")):
        if path.is_dir():
            continue
        rel = path.relative_to(source)
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        real = path.resolve()
        try:
            os.link(real, dest)
        except OSError:
            shutil.copy2(real, dest)
        names.append(rel.as_posix())
    return names


def fetch_revision(suite: Suite, model: str, step: int, output: str | Path) -> dict:
    """Put revision step{N} of published model `model` at `output` (a checkpoint directory)."""
    spec = suite.model(model)
    if not spec.published:
        raise PythiaReproError(f"{model} is trained by this suite (source train), not fetched")
    if step not in suite.model_checkpoint_steps(model):
        raise PythiaReproError(f"step {step} is not a checkpoint of {model} in {suite.source}")
    revision = checkpoint_tag(step)
    if spec.source == "hub":
        snapshot = _download(spec.repo, revision, suite.hub_cache, suite.fetch.max_retries)
        where = {"source": "hub", "repo": spec.repo, "revision": revision, "commit": snapshot.name}
    else:
        snapshot = Path(spec.local_path) / revision
        if not (snapshot / "config.json").is_file():
            raise PythiaReproError(f"{snapshot}: no config.json; {model} (source local) has no checkpoint {revision}")
        where = {"source": "local", "path": str(snapshot)}
    output = Path(output)
    with atomic_dir(output) as tmp:
        files = _link_tree(snapshot, tmp)
        if "config.json" not in files:
            raise PythiaReproError(f"{where.get('repo', snapshot)}@{revision}: no config.json; not a model revision")
        write_json(tmp / "export.json", {"model": spec.name, "step": step, **where, "files": files})
    if suite.fetch.cleanup and spec.source == "hub":
        _remove_cached(snapshot)
    log.info("%s step %s: %s -> %s", model, step, where, output)
    return {"model": model, "step": step, **where}


def _remove_cached(snapshot: Path) -> None:
    """Drop a revision's blobs from the cache once linked elsewhere (fetch.cleanup)."""
    for path in snapshot.rglob("*"):
        if path.is_symlink():
            blob = path.resolve()
            path.unlink()
            blob.unlink(missing_ok=True)
