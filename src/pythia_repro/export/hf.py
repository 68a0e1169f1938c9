"""Export a training checkpoint as a `transformers` model directory.

The result loads with `AutoModelForCausalLM.from_pretrained(DIR)` / `AutoTokenizer.from_pretrained(DIR)`
and with `lm_eval --model hf --model_args pretrained=DIR`:

    config.json, generation_config.json      the trainer's model config (from the manifest)
    model.safetensors (or shards + index)    weights in `export.dtype`, tied copies dropped
    tokenizer.json, tokenizer_config.json    the suite's tokenizer, <|endoftext|> as bos/eos/unk
    export.json                              provenance: model, step, dtype, source checkpoint,
                                             and every file's size and xxh3-64 checksum

The weights are written straight from the checkpoint's state dict; no model is instantiated
(a meta-device model supplies the expected names), so exporting a 12B checkpoint needs
memory for its weights only. The checkpoint is verified against its manifest first (sizes,
checksums). The directory is published atomically; a directory whose export.json already
matches (model, step, dtype, manifest) and whose files still match the sizes and checksums it
records is left alone; one with a damaged file (a truncated model.safetensors) is exported again.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from pythia_repro.atomic import atomic_dir, write_json
from pythia_repro.errors import PythiaReproError
from pythia_repro.export.checkpoint import CheckpointError, load_state_dict, read_manifest
from pythia_repro.layout import CHECKPOINT_MANIFEST
from pythia_repro.train.checkpoint import check_files, file_records, verify

log = logging.getLogger(__name__)

EXPORT_INFO = "export.json"
EOD_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|padding|>"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
MAX_SHARD_SIZE = "5GB"


def hf_config_from_manifest(manifest: dict):
    """The `transformers` config object recorded by the trainer (model.config.to_dict())."""
    from transformers import CONFIG_MAPPING

    # Runtime-only settings (attention kernel, device map) do not belong in an exported config.
    cfg = {k: v for k, v in manifest["hf_config"].items() if not k.startswith("_")}
    model_type = cfg.get("model_type")
    if model_type not in CONFIG_MAPPING:
        raise CheckpointError(f"manifest hf_config: unknown model_type {model_type!r}")
    return CONFIG_MAPPING[model_type].from_dict(cfg)


def _expected_names(config) -> tuple[list[str], dict[str, str], str]:
    """Persistent state-dict names of the model, and tied aliases -> the name that is kept.

    The first name of a shared parameter is kept (the input embedding precedes the output
    head in module order), exactly as `save_pretrained` does.
    """
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    names = list(model.state_dict(keep_vars=True).keys())
    first_by_id: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        keeper = first_by_id.setdefault(id(param), name)
        if keeper != name:
            aliases[name] = keeper
    return names, aliases, type(model).__name__


def convert_state_dict(state: dict[str, torch.Tensor], config, dtype: torch.dtype) -> tuple[dict, str]:
    """Check names against the architecture, drop tied duplicates, cast; returns (state, class name)."""
    names, aliases, arch_class = _expected_names(config)
    expected = [n for n in names if n not in aliases]
    missing = [n for n in expected if n not in state]
    unexpected = [n for n in state if n not in names]
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint weights do not match {arch_class}: missing {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    out: dict[str, torch.Tensor] = {}
    for name in expected:
        # Pop as we go: a source tensor is released once converted (peak ~ merged fp32 + output).
        tensor = state.pop(name)
        if not isinstance(tensor, torch.Tensor):  # zero_to_fp32 lazy tensors
            tensor = tensor.contiguous()
        # Own storage per tensor: ZeRO merges are views into one flat buffer, which safetensors
        # would otherwise treat as shared.
        out[name] = tensor.detach().to(dtype=dtype).contiguous().clone()
        del tensor
    state.clear()
    return out, arch_class


def build_tokenizer(tokenizer_file: str | Path, model_max_length: int):
    """The suite's tokenizer.json as a fast tokenizer with Pythia's special tokens."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tokenizer_file = Path(tokenizer_file)
    if not tokenizer_file.is_file():
        raise PythiaReproError(f"{tokenizer_file}: tokenizer.json not found")
    vocab = Tokenizer.from_file(str(tokenizer_file)).get_vocab(with_added_tokens=True)
    if EOD_TOKEN not in vocab:
        raise PythiaReproError(f"{tokenizer_file}: no {EOD_TOKEN} token")
    kwargs = dict(bos_token=EOD_TOKEN, eos_token=EOD_TOKEN, unk_token=EOD_TOKEN)
    if PAD_TOKEN in vocab:
        kwargs["pad_token"] = PAD_TOKEN
    tok = PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_file),
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
        **kwargs,
    )
    return tok


def _portable_tokenizer_config(path: Path) -> None:
    """Name the class every `transformers` version knows (v5 writes its internal backend name)."""
    cfg = json.loads(path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def _publishable_permissions(root: Path) -> None:
    """Temporary files are created private (0600/0700); give the export the umask's permissions."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(root, 0o777 & ~umask)
    for path in root.rglob("*"):
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def _already_exported(output: Path, info: dict) -> bool:
    path = output / EXPORT_INFO
    if not path.is_file():
        return False
    try:
        done = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    keys = ("model", "step", "dtype", "manifest")
    if not (all(done.get(k) == info.get(k) for k in keys) and (output / "config.json").is_file()):
        return False
    problems = check_files(output, done.get("files") or {})
    if problems:
        log.warning("%s: %s; exporting again", output, "; ".join(f"{rel}: {why}" for rel, why in problems))
        return False
    return True


def verify_export(output: str | Path) -> dict:
    """export.json of an exported directory whose files match the sizes and checksums it
    records; CheckpointError naming the file and why otherwise."""
    output = Path(output)
    path = output / EXPORT_INFO
    try:
        info = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable export record ({exc}); export again") from None
    problems = check_files(output, info.get("files") or {})
    if problems:
        detail = "; ".join(f"{rel}: {why}" for rel, why in problems)
        raise CheckpointError(f"{output}: damaged export: {detail}; export again (pythia-repro export)")
    return info


def export_checkpoint(
    tag_dir: str | Path,
    output: str | Path,
    *,
    model: str | None = None,
    step: int | None = None,
    dtype: str = "float32",
    tokenizer: str | Path | None = None,
    fallback_tokenizer: str | Path | None = None,
    force: bool = False,
) -> dict:
    """Export the checkpoint in `tag_dir` to `output`; returns the export info (export.json)."""
    tag_dir, output = Path(tag_dir), Path(output)
    if dtype not in DTYPES:
        raise PythiaReproError(f"export.dtype: {dtype!r} is not one of {sorted(DTYPES)}")
    manifest = read_manifest(tag_dir, model=model, step=step)
    verify(tag_dir)  # sizes and checksums of the files the weights come from
    if tokenizer is None:
        # The manifest's path, unless the results moved since training: then the suite's.
        recorded = manifest.get("tokenizer")
        tokenizer = recorded if recorded and Path(recorded).is_file() else (fallback_tokenizer or recorded)
    if not tokenizer:
        raise CheckpointError(f"{tag_dir / CHECKPOINT_MANIFEST}: no tokenizer path recorded and none given")
    info = {
        "model": manifest["model"],
        "step": int(manifest["step"]),
        "dtype": dtype,
        "arch": manifest["arch"],
        "size": manifest.get("size"),
        "source": str(tag_dir),
        "manifest": manifest,
    }
    if not force and _already_exported(output, info):
        log.info("%s: already exported, skipping", output)
        return json.loads((output / EXPORT_INFO).read_text())

    config = hf_config_from_manifest(manifest)
    seq_length = int(manifest.get("seq_length") or config.max_position_embeddings)
    tok = build_tokenizer(tokenizer, seq_length)  # fail on a bad tokenizer before the heavy work
    state = load_state_dict(tag_dir, manifest)
    state, arch_class = convert_state_dict(state, config, DTYPES[dtype])
    info["num_parameters"] = sum(t.numel() for t in state.values())
    info["architecture"] = arch_class

    config.architectures = [arch_class]
    config.dtype = dtype
    config.use_cache = True

    from huggingface_hub import save_torch_state_dict
    from transformers import GenerationConfig

    with atomic_dir(output) as tmp:
        save_torch_state_dict(state, tmp, max_shard_size=MAX_SHARD_SIZE, metadata={"format": "pt"})
        config.save_pretrained(tmp)
        gen = GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id)
        if tok.pad_token_id is not None:
            gen.pad_token_id = tok.pad_token_id
        gen.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        _portable_tokenizer_config(tmp / "tokenizer_config.json")
        info["files"] = file_records(tmp, exclude=(EXPORT_INFO,))
        write_json(tmp / EXPORT_INFO, info)
        _publishable_permissions(tmp)
    log.info("exported %s step %s (%s) to %s", info["model"], info["step"], dtype, output)
    return info


def export_suite_checkpoint(suite, model: str, step: int, output: str | Path, force: bool = False) -> dict:
    """Export checkpoint `step` of suite model `model` with the suite's export settings."""
    spec = suite.model(model)
    tag_dir = suite.layout.checkpoint(spec.name, step)
    if not tag_dir.is_dir():
        raise CheckpointError(f"{tag_dir}: checkpoint directory not found (has {model} been trained to step {step}?)")
    return export_checkpoint(
        tag_dir,
        output,
        model=spec.name,
        step=step,
        dtype=suite.export.dtype,
        fallback_tokenizer=suite.layout.tokenizer,
        force=force,
    )
