"""Read one training checkpoint: its manifest and its weights as a Hugging Face state dict.

Contract with the trainer: DeepSpeed `save_checkpoint(save_dir, tag)` with
save_dir = `{model_dir}/checkpoints`, tag = `step{N}`, `engine.module` = the `transformers`
model (state-dict keys are the Hugging Face names), and a `manifest.json` written last in
the tag directory with `"complete": true`. A tag directory without it is an unfinished save.

ZeRO stage 0 stores the module weights in `mp_rank_00_model_states.pt`; stages 1-3 store
the fp32 master weights partitioned in `*_optim_states.pt`, merged here by DeepSpeed's own
`zero_to_fp32`. Every failure names the file it concerns.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch

from pythia_repro.layout import CHECKPOINT_MANIFEST
from pythia_repro.train.checkpoint import CheckpointError, read_manifest

__all__ = ["CheckpointError", "load_state_dict", "read_manifest"]

MODEL_STATES = "mp_rank_00_model_states.pt"


def _check_archive(path: Path) -> None:
    """torch.save files are zip archives; a truncated one has no central directory."""
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        with zipfile.ZipFile(path) as zf:
            zf.infolist()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise CheckpointError(f"{path}: unreadable or truncated checkpoint file ({exc})") from None


def _load_stage0(tag_dir: Path) -> dict[str, torch.Tensor]:
    path = tag_dir / MODEL_STATES
    _check_archive(path)
    try:
        # DeepSpeed stores its config and client state beside the weights: not weights-only.
        states = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a corrupt file
        raise CheckpointError(f"{path}: cannot load ({type(exc).__name__}: {exc})") from None
    module = states.get("module") if isinstance(states, dict) else None
    if not isinstance(module, dict) or not module:
        raise CheckpointError(f"{path}: no 'module' state dict inside")
    return dict(module)


def _load_zero(tag_dir: Path) -> dict[str, torch.Tensor]:
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    optim = sorted(tag_dir.glob("*optim_states.pt"))
    if not optim:
        raise CheckpointError(f"{tag_dir}: ZeRO checkpoint without *_optim_states.pt files")
    for path in optim + sorted(tag_dir.glob("*model_states.pt")):
        _check_archive(path)
    try:
        state = get_fp32_state_dict_from_zero_checkpoint(str(tag_dir.parent), tag=tag_dir.name)
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - DeepSpeed raises bare exceptions for broken shards
        raise CheckpointError(f"{tag_dir}: cannot merge ZeRO shards ({type(exc).__name__}: {exc})") from None
    return dict(state)


def load_state_dict(tag_dir: str | Path, manifest: dict) -> dict[str, torch.Tensor]:
    """Full-precision weights keyed by Hugging Face parameter names."""
    tag_dir = Path(tag_dir)
    stage = int(manifest["zero_stage"])
    if stage not in (0, 1, 2, 3):
        raise CheckpointError(f"{tag_dir / CHECKPOINT_MANIFEST}: zero_stage {stage} is not 0-3")
    return _load_stage0(tag_dir) if stage == 0 else _load_zero(tag_dir)
