"""Training checkpoints: DeepSpeed's files plus a manifest that says the checkpoint is whole.

Layout (a contract: export reads it; names from pythia_repro.layout):
    {model_dir}/checkpoints/step{N}/            DeepSpeed save_dir + tag
        mp_rank_00_model_states.pt              HF state-dict keys (engine.module is the HF model)
        *_optim_states.pt                       ZeRO optimizer partitions, one per rank
        rng_rank{R}.pt                          python/numpy/torch RNG states of rank R
        manifest.json                           written last, atomically; "complete": true

A step directory without a complete manifest was interrupted mid-write: resume ignores it and
the next start deletes it. The manifest records every file's size and xxh3-64 checksum
(`"files"`); `verify` checks them (and that each torch file is a whole zip archive) before
resume, export and upload use a checkpoint. A complete checkpoint that fails is moved aside as
`step{N}.corrupt-{time}` (never deleted) and training resumes from the newest one that verifies.
Manifests written before checksums existed are checked for sizes and zip integrity only.
Checkpoints taken off the schedule (on SIGTERM/SIGUSR1/SIGINT, or at a
segment end that is not a checkpoint step) say "scheduled": false; they resume training but are
not exported, and are deleted once a later checkpoint is complete.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from pythia_repro.atomic import write_json
from pythia_repro.errors import PythiaReproError
from pythia_repro.layout import CHECKPOINT_MANIFEST, checkpoint_tag

MANIFEST_KEYS = ("step", "model", "arch", "hf_config", "zero_stage", "complete")


class CheckpointError(PythiaReproError):
    """A checkpoint that is missing, incomplete or unreadable; the message names the path."""


def read_manifest(tag_dir: str | Path, *, model: str | None = None, step: int | None = None) -> dict:
    """The manifest of a complete checkpoint; CheckpointError if absent, torn or mismatched."""
    tag_dir = Path(tag_dir)
    if not tag_dir.is_dir():
        raise CheckpointError(f"{tag_dir}: checkpoint directory not found")
    path = tag_dir / CHECKPOINT_MANIFEST
    if not path.is_file():
        raise CheckpointError(
            f"{path}: no manifest; the checkpoint is incomplete (the trainer writes it last) or not a checkpoint"
        )
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if missing:
        raise CheckpointError(f"{path}: missing keys {missing}")
    if manifest["complete"] is not True:
        raise CheckpointError(f"{path}: checkpoint is marked incomplete")
    if model is not None and manifest["model"] != model:
        raise CheckpointError(f"{path}: checkpoint of model {manifest['model']!r}, expected {model!r}")
    if step is not None and int(manifest["step"]) != int(step):
        raise CheckpointError(f"{path}: checkpoint of step {manifest['step']}, expected {step}")
    return manifest


# ----- verification ------------------------------------------------------------------------------

CHUNK = 8 << 20  # checksum read size
CHECKSUM = "xxh3_64"  # the algorithm named in manifests; zlib's crc32 where xxhash is missing
CORRUPT_MARK = ".corrupt-"


def _checksum_algorithm() -> str:
    try:
        import xxhash  # noqa: F401
    except ImportError:
        return "crc32"
    return CHECKSUM


def file_checksum(path: str | Path, algorithm: str | None = None) -> str:
    """Hex checksum of a file, streamed in 8 MB chunks: xxh3-64 (~10+ GB/s) or zlib crc32."""
    algorithm = algorithm or _checksum_algorithm()
    with open(path, "rb", buffering=0) as fh:
        if algorithm == "crc32":
            import zlib

            crc = 0
            while chunk := fh.read(CHUNK):
                crc = zlib.crc32(chunk, crc)
            return f"{crc:08x}"
        if algorithm != CHECKSUM:
            raise CheckpointError(f"{path}: unknown checksum algorithm {algorithm!r}")
        import xxhash

        digest = xxhash.xxh3_64()
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while n := fh.readinto(buf):
            digest.update(view[:n])
        return digest.hexdigest()


def file_records(folder: str | Path, exclude: tuple[str, ...] = (CHECKPOINT_MANIFEST,)) -> dict:
    """{relative path: {"size", algorithm: checksum}} of every file under `folder`."""
    folder = Path(folder)
    algorithm = _checksum_algorithm()
    records = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and rel not in exclude:
            records[rel] = {"size": path.stat().st_size, algorithm: file_checksum(path, algorithm)}
    return records


def check_files(folder: str | Path, records: dict, *, checksums: bool = True) -> list[tuple[str, str]]:
    """[(file, reason)] of files under `folder` that differ from `records` (file_records' form)."""
    folder = Path(folder)
    problems = []
    for rel, record in sorted(records.items()):
        path = folder / rel
        if not path.is_file():
            problems.append((rel, "missing"))
            continue
        size = path.stat().st_size
        if size != record.get("size"):
            what = "zero-byte" if size == 0 else ("truncated" if size < record.get("size", 0) else "grown")
            problems.append((rel, f"{what}: {size:,} bytes, manifest says {record.get('size'):,}"))
            continue
        if checksums:
            algorithm = next((a for a in (CHECKSUM, "crc32") if a in record), None)
            if algorithm is not None and file_checksum(path, algorithm) != record[algorithm]:
                problems.append((rel, f"{algorithm} checksum mismatch (contents changed since the save)"))
    return problems


def _zip_problem(path: Path) -> str | None:
    """torch.save files are zip archives; a truncated or overwritten one has no central directory."""
    if path.stat().st_size == 0:
        return "zero-byte file"
    try:
        with zipfile.ZipFile(path) as zf:
            zf.infolist()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        return f"unreadable torch file ({exc})"
    return None


def verify(tag_dir: str | Path, *, checksums: bool = True) -> dict:
    """The manifest of a complete checkpoint whose files are whole; CheckpointError naming the
    file and why otherwise. Checks sizes and checksums recorded in the manifest, the presence of
    the model/optimizer files, and that every torch file is a readable zip archive."""
    tag_dir = Path(tag_dir)
    manifest = read_manifest(tag_dir)
    records = manifest.get("files")
    if records is not None:
        problems = check_files(tag_dir, records, checksums=checksums)
    else:  # an older manifest: sizes and archives only
        problems = []
        if not list(tag_dir.glob("*model_states.pt")):  # ZeRO-3 names it zero_pp_rank_*_model_states.pt
            problems.append(("mp_rank_00_model_states.pt", "missing"))
        if int(manifest.get("zero_stage", 0)) > 0 and not list(tag_dir.glob("*optim_states.pt")):
            problems.append(("*_optim_states.pt", "missing (ZeRO checkpoint without optimizer partitions)"))
    bad = {rel for rel, _ in problems}
    for path in sorted(tag_dir.glob("*.pt")):
        if path.name not in bad and (reason := _zip_problem(path)):
            problems.append((path.name, reason))
    if problems:
        detail = "; ".join(f"{rel}: {reason}" for rel, reason in problems)
        raise CheckpointError(f"{tag_dir}: corrupt checkpoint: {detail}")
    return manifest


def quarantine(tag_dir: str | Path) -> Path:
    """Move a corrupt checkpoint aside as `step{N}.corrupt-{time}` (kept for inspection, and no
    longer seen by resume or export); returns the new path."""
    tag_dir = Path(tag_dir)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = tag_dir.with_name(f"{tag_dir.name}{CORRUPT_MARK}{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = tag_dir.with_name(f"{tag_dir.name}{CORRUPT_MARK}{stamp}-{n}")
    os.replace(tag_dir, target)
    return target


def latest_verified(save_dir: str | Path, log: Callable[[str], None] = print) -> int | None:
    """The newest complete checkpoint that verifies; newer complete ones that do not are
    quarantined, each logged with the file and the reason. None if none verifies."""
    save_dir = Path(save_dir)
    for step in sorted(complete_checkpoints(save_dir), reverse=True):
        tag_dir = save_dir / checkpoint_tag(step)
        try:
            verify(tag_dir)
        except CheckpointError as exc:
            moved = quarantine(tag_dir)
            log(f"{exc}; moved aside to {moved.name}, resuming from an earlier checkpoint")
            continue
        return step
    return None


def checkpoint_states(save_dir: str | Path) -> list[dict]:
    """Every checkpoint directory of `save_dir` with its state: ok, corrupt (file: reason),
    incomplete (no complete manifest) or quarantined (moved aside earlier)."""
    save_dir = Path(save_dir)
    rows = []
    if not save_dir.is_dir():
        return rows
    for step, path in sorted(_step_dirs(save_dir).items()):
        try:
            manifest = verify(path)
        except CheckpointError as exc:
            state = "corrupt" if is_complete(path) else "incomplete"
            rows.append({"step": step, "path": str(path), "state": state, "reason": str(exc)})
            continue
        rows.append({"step": step, "path": str(path), "state": "ok", "checksums": "files" in manifest,
                     "scheduled": manifest.get("scheduled", True)})
    for path in sorted(save_dir.glob(f"step*{CORRUPT_MARK}*")):
        step = path.name[4:].split(CORRUPT_MARK)[0]
        rows.append({"step": int(step) if step.isdigit() else None, "path": str(path), "state": "quarantined"})
    return rows


def is_complete(tag_dir: str | Path) -> bool:
    try:
        read_manifest(tag_dir)
    except CheckpointError:
        return False
    return True


def _step_dirs(save_dir: Path) -> dict[int, Path]:
    if not save_dir.is_dir():
        return {}
    found = {}
    for path in save_dir.iterdir():
        if path.is_dir() and path.name.startswith("step") and path.name[4:].isdigit():
            found[int(path.name[4:])] = path
    return found


def complete_checkpoints(save_dir: str | Path) -> dict[int, dict]:
    """{step: manifest} of the complete checkpoints in `save_dir`, in step order."""
    found = {}
    for step, path in sorted(_step_dirs(Path(save_dir)).items()):
        if is_complete(path):
            found[step] = read_manifest(path)
    return found


def latest_complete(save_dir: str | Path) -> int | None:
    steps = list(complete_checkpoints(save_dir))
    return max(steps) if steps else None


def remove_incomplete(save_dir: str | Path) -> list[int]:
    """Delete step directories without a complete manifest (left by a kill mid-save)."""
    removed = []
    for step, path in _step_dirs(Path(save_dir)).items():
        if not is_complete(path):
            shutil.rmtree(path)
            removed.append(step)
    return sorted(removed)


def remove_stale_unscheduled(save_dir: str | Path, newer_than: int) -> list[int]:
    """Delete off-schedule checkpoints older than the complete checkpoint at `newer_than`."""
    removed = []
    for step, manifest in complete_checkpoints(save_dir).items():
        if step < newer_than and manifest.get("scheduled") is False:
            shutil.rmtree(Path(save_dir) / checkpoint_tag(step))
            removed.append(step)
    return removed


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _fsync_tree(path: Path) -> None:
    for file in path.iterdir():
        if file.is_file():
            fd = os.open(file, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def save(engine, save_dir: Path, step: int, manifest: dict, client_state: dict, rank: int) -> Path:
    """Collective: every rank writes its DeepSpeed shards and RNG; rank 0 then the manifest."""
    import torch.distributed as dist

    tag_dir = save_dir / checkpoint_tag(step)
    if rank == 0 and tag_dir.exists():
        shutil.rmtree(tag_dir)  # a stale or half-written copy of this very step
    dist.barrier()
    engine.save_checkpoint(str(save_dir), tag=checkpoint_tag(step), client_state=client_state, save_latest=False)
    torch.save(rng_state(), tag_dir / f"rng_rank{rank}.pt")
    _fsync_tree(tag_dir)
    dist.barrier()
    if rank == 0:
        # Every rank's files are on disk (and in the page cache): record what they must be.
        write_json(tag_dir / CHECKPOINT_MANIFEST, {**manifest, "files": file_records(tag_dir), "complete": True})
    dist.barrier()
    return tag_dir


def load(engine, save_dir: Path, step: int, rank: int) -> dict:
    """Weights, optimizer and scheduler (and this rank's RNG) from checkpoint `step`; its client state."""
    tag_dir = save_dir / checkpoint_tag(step)
    read_manifest(tag_dir, step=step)
    path, client_state = engine.load_checkpoint(
        str(save_dir), tag=checkpoint_tag(step), load_optimizer_states=True, load_lr_scheduler_states=True
    )
    if path is None:
        raise CheckpointError(f"{tag_dir}: DeepSpeed could not load this checkpoint")
    rng_file = tag_dir / f"rng_rank{rank}.pt"
    if rng_file.is_file():
        set_rng_state(torch.load(rng_file, weights_only=False))
    client_state = client_state or {}
    if client_state.get("step", step) != step:
        raise CheckpointError(f"{tag_dir}: client state says step {client_state.get('step')}")
    return client_state


def stopped_with_checkpoint(before: dict[int, dict], after: dict[int, dict]) -> bool:
    """Whether a launch ended with a new, complete, off-schedule checkpoint (a signal or the time
    limit stopped it), given `complete_checkpoints` before and after it."""
    new = sorted(set(after) - set(before))
    return bool(new) and after[new[-1]].get("scheduled") is False
