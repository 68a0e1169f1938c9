"""Training checkpoints: DeepSpeed's files plus a manifest that says the checkpoint is whole.

Layout (a contract: export reads it):
    {model_dir}/checkpoints/step{N}/            DeepSpeed save_dir + tag
        mp_rank_00_model_states.pt              HF state-dict keys (engine.module is the HF model)
        *_optim_states.pt                       ZeRO optimizer partitions, one per rank
        rng_rank{R}.pt                          python/numpy/torch RNG states of rank R
        manifest.json                           written last, atomically; "complete": true

A step directory without a complete manifest was interrupted mid-write: resume ignores it and
the next start deletes it. Checkpoints taken off the schedule (on SIGTERM/SIGUSR1, or at a
segment end that is not a checkpoint step) say "scheduled": false; they resume training but are
not exported, and are deleted once a later checkpoint is complete.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from pythia_repro.atomic import write_json

MANIFEST = "manifest.json"


def tag(step: int) -> str:
    return f"step{step}"


def read_manifest(tag_dir: Path) -> dict | None:
    """The manifest of a complete checkpoint, or None if the directory is not one."""
    try:
        manifest = json.loads((Path(tag_dir) / MANIFEST).read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None
    return manifest if manifest.get("complete") is True else None


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
        manifest = read_manifest(path)
        if manifest is not None:
            found[step] = manifest
    return found


def latest_complete(save_dir: str | Path, at_most: int | None = None) -> int | None:
    steps = [s for s in complete_checkpoints(save_dir) if at_most is None or s <= at_most]
    return max(steps) if steps else None


def remove_incomplete(save_dir: str | Path) -> list[int]:
    """Delete step directories without a complete manifest (left by a kill mid-save)."""
    removed = []
    for step, path in _step_dirs(Path(save_dir)).items():
        if read_manifest(path) is None:
            shutil.rmtree(path)
            removed.append(step)
    return sorted(removed)


def remove_stale_unscheduled(save_dir: str | Path, newer_than: int) -> list[int]:
    """Delete off-schedule checkpoints older than the complete checkpoint at `newer_than`."""
    removed = []
    for step, manifest in complete_checkpoints(save_dir).items():
        if step < newer_than and manifest.get("scheduled") is False:
            shutil.rmtree(Path(save_dir) / tag(step))
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

    tag_dir = save_dir / tag(step)
    if rank == 0 and tag_dir.exists():
        shutil.rmtree(tag_dir)  # a stale or half-written copy of this very step
    dist.barrier()
    engine.save_checkpoint(str(save_dir), tag=tag(step), client_state=client_state, save_latest=False)
    torch.save(rng_state(), tag_dir / f"rng_rank{rank}.pt")
    _fsync_tree(tag_dir)
    dist.barrier()
    if rank == 0:
        write_json(tag_dir / MANIFEST, {**manifest, "complete": True})
    dist.barrier()
    return tag_dir


def load(engine, save_dir: Path, step: int, rank: int, restore_rng: bool = True) -> dict:
    """Weights, optimizer and scheduler (and this rank's RNG) from checkpoint `step`; its client state."""
    tag_dir = save_dir / tag(step)
    if read_manifest(tag_dir) is None:
        raise FileNotFoundError(f"{tag_dir}: no complete checkpoint (manifest.json missing or incomplete)")
    path, client_state = engine.load_checkpoint(
        str(save_dir), tag=tag(step), load_optimizer_states=True, load_lr_scheduler_states=True
    )
    if path is None:
        raise FileNotFoundError(f"{tag_dir}: DeepSpeed could not load this checkpoint")
    rng_file = tag_dir / f"rng_rank{rank}.pt"
    if restore_rng and rng_file.is_file():
        set_rng_state(torch.load(rng_file, weights_only=False))
    return client_state or {}
