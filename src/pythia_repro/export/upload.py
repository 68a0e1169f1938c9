"""Publish exported checkpoints by revision: one repo per model, one branch per checkpoint.

Layout (as EleutherAI/pythia-*): repo `{upload.namespace}/{model}`, branch `step{N}` for each
checkpoint, and `main` holding the final step. Targets:

- `hub`:    the Hugging Face Hub (or any `HF_ENDPOINT`) through `huggingface_hub.HfApi`;
            the token comes only from the `HF_TOKEN` environment variable and is never logged.
- `mirror`: an offline copy laid out as a huggingface_hub cache (models--NS--NAME/refs,
            snapshots/COMMIT, blobs), so that
            `from_pretrained("NS/NAME", revision="step64", cache_dir=MIRROR)` works with
            HF_HUB_OFFLINE=1 — the default config's target, no network needed.
- `none`:   record a receipt only.

Before anything is sent, the export's files are checked against the sizes and checksums its
export.json records (a truncated model.safetensors is refused, not published). Every target is
idempotent: files already present at the revision (same content hash) are not sent again, and a
revision that already matches is not touched; a mirror blob whose content no longer hashes to
its name is rewritten. A mirror snapshot also records, as the huggingface_hub cache does
(`.no_exist/COMMIT/FILE`), the optional files `transformers` looks for that an export lacks, so
`from_pretrained(..., cache_dir=MIRROR)` never asks the network about them. Hub calls are retried with
exponential backoff on transient failures (connection errors, timeouts, 408, 429, 5xx).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pythia_repro.atomic import atomic_file, write_json, write_text
from pythia_repro.errors import PythiaReproError

log = logging.getLogger(__name__)

TOKEN_ENV = "HF_TOKEN"
# Files stored as LFS blobs on the Hub (and named by sha256 in a hub cache); others are git blobs.
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".gguf", ".npz")
LFS_MIN_SIZE = 10 * 1024 * 1024
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# Files `AutoTokenizer/AutoModelForCausalLM.from_pretrained(repo, revision=..., cache_dir=...)`
# (transformers 5.x) look up beside the ones an export has; a mirror snapshot records those it
# lacks under .no_exist/, so a lookup is answered from the cache instead of the network.
# Measured with transformers 5.24 / huggingface_hub 2.4 by watching the cache lookups.
OPTIONAL_FILES = (
    "added_tokens.json", "special_tokens_map.json", "chat_template.jinja", "chat_template.json",
    "tokenizer.model", "vocab.json", "vocab.txt", "merges.txt", "generation_config.json",
    "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json",
    "adapter_config.json", "processor_config.json", "preprocessor_config.json", "custom_generate/generate.py",
)


class UploadError(PythiaReproError):
    """An upload that cannot proceed (no token, bad input); never contains the token."""


# ----- local files ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalFile:
    path: str  # posix path inside the repo
    abspath: Path
    size: int
    sha256: str
    git_sha1: str

    @property
    def is_lfs(self) -> bool:
        return self.path.endswith(LFS_SUFFIXES) or self.size >= LFS_MIN_SIZE

    @property
    def etag(self) -> str:
        """What the Hub reports as the file's ETag, and what a hub cache names the blob by."""
        return self.sha256 if self.is_lfs else self.git_sha1


def _hash_file(path: Path) -> tuple[int, str, str]:
    size = path.stat().st_size
    sha256 = hashlib.sha256()
    git = hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            sha256.update(chunk)
            git.update(chunk)
    return size, sha256.hexdigest(), git.hexdigest()


def local_files(folder: str | Path) -> list[LocalFile]:
    folder = Path(folder)
    if not folder.is_dir():
        raise UploadError(f"{folder}: export directory not found")
    files = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_dir() or any(part.startswith(".") for part in Path(rel).parts):
            continue
        size, sha256, git = _hash_file(path)
        files.append(LocalFile(rel, path, size, sha256, git))
    if not any(f.path == "config.json" for f in files):
        raise UploadError(f"{folder}: no config.json; not an exported model directory")
    return files


@dataclass(frozen=True)
class UploadRequest:
    """One exported checkpoint to publish: its files, the repo and the revisions (branches) it goes to."""

    repo_id: str
    folder: Path
    files: list[LocalFile]
    revisions: list[str]
    message: str


# ----- retries --------------------------------------------------------------------------------


def _status_of(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def is_transient(exc: BaseException) -> bool:
    """Connection-level failures and 408/429/5xx responses are worth retrying; others are not."""
    if type(exc).__name__ == "OfflineModeIsEnabled":  # a ConnectionError subclass, but final
        return False
    status = _status_of(exc)
    if status is not None:
        return status in RETRY_STATUS or status >= 500
    transient: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
    with contextlib.suppress(ImportError):
        import httpx2

        transient += (httpx2.TransportError,)
    with contextlib.suppress(ImportError):
        import httpx

        transient += (httpx.TransportError,)
    with contextlib.suppress(ImportError):
        import requests

        transient += (requests.ConnectionError, requests.Timeout)
    return isinstance(exc, transient)


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    value = getattr(response, "headers", {}).get("Retry-After") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class Redactor:
    """Removes a secret from text; used on every message we log or raise."""

    def __init__(self, secret: str | None) -> None:
        self.secret = secret

    def __call__(self, text: object) -> str:
        text = str(text)
        return text.replace(self.secret, "***") if self.secret else text


def with_retries(
    fn: Callable[[], Any],
    what: str,
    *,
    max_retries: int,
    base_delay: float = 1.0,
    max_delay: float = 60.0,
    redact: Callable[[object], str] = str,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """Call fn(); on a transient error wait base_delay * 2**attempt (or Retry-After) and retry."""
    for attempt in range(max_retries + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt >= max_retries or not is_transient(exc):
                raise
            delay = min(max_delay, _retry_after(exc) or base_delay * 2**attempt)
            log.warning(
                "%s failed (%s: %s); retry %d/%d in %.1fs",
                what, type(exc).__name__, redact(exc).splitlines()[0][:300], attempt + 1, max_retries, delay,
            )
            sleep(delay)
    raise AssertionError("unreachable")


# ----- targets ---------------------------------------------------------------------------------


def revisions_for(step: int, final_step: int) -> list[str]:
    """Branch `step{N}`; the final checkpoint also becomes `main`."""
    return [f"step{step}"] + (["main"] if step == final_step else [])


def _shareable(path: Path) -> None:
    """Atomic writes create private temp files; a mirror is read by others: apply the umask."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


class MirrorTarget:
    """A huggingface_hub cache directory holding every uploaded revision."""

    name = "mirror"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def repo_dir(self, repo_id: str) -> Path:
        return self.root / ("models--" + repo_id.replace("/", "--"))

    @staticmethod
    def commit_id(files: list[LocalFile]) -> str:
        """A deterministic 40-hex commit id of the tree (path and blob id of every file)."""
        tree = "".join(f"{f.etag} {f.path}\n" for f in sorted(files, key=lambda f: f.path))
        return hashlib.sha1(f"pythia-repro mirror tree\n{tree}".encode()).hexdigest()

    def _snapshot_complete(self, snapshot: Path, files: list[LocalFile]) -> bool:
        return all((snapshot / f.path).is_file() for f in files)

    @staticmethod
    def blob_problem(blob: Path, f: LocalFile) -> str | None:
        """Why a blob does not hold file `f` (missing, wrong size, content hash != its name)."""
        if not blob.is_file():
            return "missing"
        size, sha256, git = _hash_file(blob)
        if size != f.size:
            return f"{size:,} bytes, expected {f.size:,}"
        if (sha256 if f.is_lfs else git) != f.etag:
            return "content does not match its hash"
        return None

    def verify_revision(self, repo_id: str, revision: str, files: list[LocalFile]) -> list[tuple[str, str]]:
        """[(file, reason)] of a mirror revision that does not serve exactly `files`."""
        repo = self.repo_dir(repo_id)
        ref = repo / "refs" / revision
        if not ref.is_file():
            return [(f"refs/{revision}", "missing")]
        snapshot = repo / "snapshots" / ref.read_text().strip()
        problems = []
        for f in files:
            link = snapshot / f.path
            if not link.is_file():
                problems.append((f.path, "missing from the snapshot"))
            elif os.path.realpath(link) != os.path.realpath(repo / "blobs" / f.etag):
                problems.append((f.path, "snapshot points at another blob"))
            elif reason := self.blob_problem(repo / "blobs" / f.etag, f):
                problems.append((f.path, f"blob {f.etag[:12]}: {reason}"))
        return problems

    def _write_blob(self, repo: Path, f: LocalFile) -> bool:
        blob = repo / "blobs" / f.etag
        if self.blob_problem(blob, f) is None:
            return False
        if blob.is_file():
            log.warning("%s: damaged mirror blob of %s, rewriting it", blob, f.path)
        with atomic_file(blob, "wb") as out, open(f.abspath, "rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
        _shareable(blob)
        return True

    def _write_snapshot(self, repo: Path, commit: str, files: list[LocalFile]) -> None:
        snapshot = repo / "snapshots" / commit
        if snapshot.is_dir() and self._snapshot_complete(snapshot, files):
            return
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{commit}.", suffix=".tmp", dir=snapshot.parent))
        try:
            for f in files:
                link = tmp / f.path
                link.parent.mkdir(parents=True, exist_ok=True)
                depth = len(Path(f.path).parts) + 1  # snapshots/COMMIT/<path parts>
                os.symlink(os.path.join(*([".."] * depth), "blobs", f.etag), link)
            os.chmod(tmp, 0o755)
            if snapshot.exists():  # an incomplete snapshot of an interrupted run
                shutil.rmtree(snapshot)
            try:
                os.replace(tmp, snapshot)
            except OSError:
                # A concurrent job published the identical snapshot first.
                if not self._snapshot_complete(snapshot, files):
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def _write_no_exist(repo: Path, commit: str, files: list[LocalFile]) -> None:
        """Empty `.no_exist/COMMIT/FILE` markers, huggingface_hub's record of a file a revision
        does not have: `hf_hub_download` finds them and answers "absent" without a request."""
        present = {f.path for f in files}
        folder = repo / ".no_exist" / commit
        for name in OPTIONAL_FILES:
            if name not in present:
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                (folder / name).touch()
                _shareable(folder / name)
        for path in [folder, *folder.rglob("*")] if folder.is_dir() else []:
            if path.is_dir():
                os.chmod(path, 0o755)

    def upload(self, request: UploadRequest) -> dict:
        repo_id, files, revisions = request.repo_id, request.files, request.revisions
        repo = self.repo_dir(repo_id)
        commit = self.commit_id(files)
        result = {}
        for rev in revisions:
            ref = repo / "refs" / rev
            current = ref.read_text().strip() if ref.is_file() else None
            if current == commit:
                problems = self.verify_revision(repo_id, rev, files)
                if not problems:
                    self._write_no_exist(repo, commit, files)  # mirrors written before the markers
                    result[rev] = {"commit": commit, "uploaded": False, "files_sent": 0}
                    continue
                log.warning("%s@%s: %s; repairing the revision", repo_id, rev,
                            "; ".join(f"{path}: {why}" for path, why in problems))
            sent = sum(self._write_blob(repo, f) for f in files)
            self._write_snapshot(repo, commit, files)
            self._write_no_exist(repo, commit, files)
            write_text(ref, commit)  # the ref last: a reader never sees a half-written revision
            _shareable(ref)
            result[rev] = {"commit": commit, "uploaded": True, "files_sent": sent}
        return result


class HubTarget:
    """The Hugging Face Hub through HfApi; every call retried on transient failures."""

    name = "hub"

    def __init__(self, *, private: bool, max_retries: int, base_delay: float = 1.0,
                 endpoint: str | None = None, token: str | None = None) -> None:
        from huggingface_hub import HfApi

        token = token if token is not None else os.environ.get(TOKEN_ENV)
        if not token:
            raise UploadError(f"upload.target is hub but {TOKEN_ENV} is not set in the environment")
        self.endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
        self.redact = Redactor(token)
        self.api = HfApi(endpoint=self.endpoint, token=token)
        self.private = private
        self.max_retries = max_retries
        self.base_delay = base_delay

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return with_retries(fn, what, max_retries=self.max_retries, base_delay=self.base_delay,
                                redact=self.redact)
        except Exception as exc:
            # Re-raise without the token, whatever the server or library put in the message.
            raise UploadError(f"{what}: {type(exc).__name__}: {self.redact(exc)}") from None

    def _remote_matches(self, repo_id: str, rev: str, files: list[LocalFile]) -> str | None:
        """The revision's commit if it already holds exactly these file contents, else None."""

        def fetch():
            try:
                return self.api.model_info(repo_id, revision=rev, files_metadata=True)
            except Exception as exc:
                if _status_of(exc) == 404:
                    return None
                raise

        info = self._call(f"model_info {repo_id}@{rev}", fetch)
        if info is None:
            return None
        remote = {s.rfilename: s for s in info.siblings or []}
        for f in files:
            sib = remote.get(f.path)
            if sib is None:
                return None
            if sib.lfs is not None and sib.lfs.sha256 == f.sha256:
                continue
            if sib.blob_id == f.git_sha1:
                continue
            return None
        return info.sha

    def upload(self, request: UploadRequest) -> dict:
        repo_id, files = request.repo_id, request.files
        result = {}
        repo_ready = False
        for rev in request.revisions:
            commit = self._remote_matches(repo_id, rev, files)
            if commit is not None:
                log.info("%s@%s already up to date (%s)", repo_id, rev, commit)
                result[rev] = {"commit": commit, "uploaded": False}
                continue
            if not repo_ready:
                self._call(f"create_repo {repo_id}",
                           lambda: self.api.create_repo(repo_id, private=self.private, exist_ok=True))
                repo_ready = True
            if rev != "main":
                self._call(f"create_branch {repo_id}@{rev}",
                           lambda rev=rev: self.api.create_branch(repo_id, branch=rev, exist_ok=True))
            info = self._call(
                f"upload_folder {repo_id}@{rev}",
                lambda rev=rev: self.api.upload_folder(
                    repo_id=repo_id, folder_path=str(request.folder), revision=rev, commit_message=request.message,
                    allow_patterns=[f.path for f in files],
                ),
            )
            log.info("%s@%s: committed %s", repo_id, rev, info.oid)
            result[rev] = {"commit": info.oid, "uploaded": True}
        return result


class NoTarget:
    name = "none"

    def upload(self, request: UploadRequest) -> dict:
        return {rev: {"commit": None, "uploaded": False} for rev in request.revisions}


# ----- entry points ------------------------------------------------------------------------------


def mirror_dir(suite) -> Path:
    configured = suite.upload.mirror_dir
    return Path(configured) if configured else suite.layout.default_mirror


def make_target(suite):
    upload = suite.upload
    kind = upload.target
    if kind == "mirror":
        return MirrorTarget(mirror_dir(suite))
    if kind == "hub":
        return HubTarget(private=upload.private, max_retries=upload.max_retries)
    if kind == "none":
        return NoTarget()
    raise PythiaReproError(f"upload.target: unknown target {kind!r}")


def repo_id_for(suite, model: str) -> str:
    return f"{suite.upload.namespace}/{suite.model(model).name}"


def upload_checkpoint(suite, model: str, step: int, folder: str | Path, receipt: str | Path | None = None,
                      target=None) -> dict:
    """Upload one exported checkpoint to its revision(s); writes and returns the receipt."""
    folder = Path(folder)
    spec = suite.model(model)
    if step not in suite.model_checkpoint_steps(spec.name):
        raise PythiaReproError(f"step {step} is not a checkpoint of {spec.name}")
    export_info = folder / "export.json"
    if export_info.is_file():
        info = json.loads(export_info.read_text())
        if info.get("model") != spec.name or int(info.get("step", -1)) != step:
            raise UploadError(f"{export_info}: export of {info.get('model')} step {info.get('step')}, "
                              f"expected {spec.name} step {step}")
    if export_info.is_file():
        from pythia_repro.export.hf import verify_export
        from pythia_repro.train.checkpoint import CheckpointError

        try:
            verify_export(folder)
        except CheckpointError as exc:
            raise UploadError(str(exc)) from None
    files = local_files(folder)
    target = target or make_target(suite)
    repo_id = repo_id_for(suite, spec.name)
    final = suite.final_step(spec.name)
    revisions = revisions_for(step, final)
    started = time.time()
    result = target.upload(UploadRequest(repo_id, folder, files, revisions, f"{spec.name} step {step}"))
    record = {
        "target": target.name,
        "repo_id": repo_id,
        "model": spec.name,
        "step": step,
        "revisions": result,
        "files": {f.path: {"size": f.size, "sha256": f.sha256} for f in files},
        "seconds": round(time.time() - started, 3),
    }
    if isinstance(target, MirrorTarget):
        record["mirror_dir"] = str(target.root)
    if isinstance(target, HubTarget):
        record["endpoint"] = target.endpoint or "https://huggingface.co"
    if receipt is not None:
        write_json(receipt, record)
    return record
