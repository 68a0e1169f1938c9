"""Exports verify against export.json; mirror revisions against their blob hashes; the mirror
records the files transformers probes for that an export lacks (`.no_exist`), so loading from it
never reaches for the network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pythia_repro.export.upload import OPTIONAL_FILES, MirrorTarget, UploadRequest, local_files
from pythia_repro.train.checkpoint import CheckpointError, file_records

REPO = "NS/pythia-pico"


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    """A directory shaped like `export_checkpoint`'s output, with its export.json file records."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GenerationConfig, GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast

    out = tmp_path_factory.mktemp("export") / "step64"
    cfg = GPTNeoXConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)
    GPTNeoXForCausalLM(cfg).save_pretrained(out)
    GenerationConfig(bos_token_id=0, eos_token_id=0).save_pretrained(out)
    vocab = {"<|endoftext|>": 0, "<|padding|>": 1, **{f"Ġw{i}": i + 2 for i in range(60)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<|padding|>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.save(str(out.parent / "tok.json"))
    PreTrainedTokenizerFast(tokenizer_file=str(out.parent / "tok.json"), eos_token="<|endoftext|>",
                            pad_token="<|padding|>").save_pretrained(out)
    info = {"model": "pythia-pico", "step": 64, "files": file_records(out, exclude=("export.json",))}
    (out / "export.json").write_text(json.dumps(info))
    return out


def test_damaged_export_is_detected(export_dir: Path, tmp_path: Path) -> None:
    import shutil

    from pythia_repro.export.hf import verify_export

    copy = tmp_path / "step64"
    shutil.copytree(export_dir, copy)
    assert verify_export(copy)["step"] == 64
    with open(copy / "model.safetensors", "r+b") as fh:
        fh.truncate(100)
    with pytest.raises(CheckpointError, match=r"model.safetensors: truncated: 100 bytes.*export again"):
        verify_export(copy)


def test_mirror_blob_damage_is_found_and_repaired(export_dir: Path, tmp_path: Path) -> None:
    mirror = MirrorTarget(tmp_path / "mirror")
    files = local_files(export_dir)
    request = UploadRequest(REPO, export_dir, files, ["step64"], "m")
    assert mirror.upload(request)["step64"]["uploaded"] is True
    assert mirror.verify_revision(REPO, "step64", files) == []
    weights = next(f for f in files if f.path == "model.safetensors")
    blob = mirror.repo_dir(REPO) / "blobs" / weights.etag
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    assert mirror.verify_revision(REPO, "step64", files) == [
        ("model.safetensors", f"blob {weights.etag[:12]}: content does not match its hash")]
    result = mirror.upload(request)["step64"]
    assert result["uploaded"] is True and result["files_sent"] == 1
    assert mirror.verify_revision(REPO, "step64", files) == []
    assert mirror.upload(request)["step64"]["uploaded"] is False


def test_mirror_loads_without_network(export_dir: Path, tmp_path: Path) -> None:
    mirror = MirrorTarget(tmp_path / "mirror")
    files = local_files(export_dir)
    mirror.upload(UploadRequest(REPO, export_dir, files, ["step64", "main"], "m"))
    commit = (mirror.repo_dir(REPO) / "refs" / "step64").read_text().strip()
    no_exist = mirror.repo_dir(REPO) / ".no_exist" / commit
    assert {"special_tokens_map.json", "added_tokens.json", "chat_template.jinja", "tokenizer.model"} <= {
        p.relative_to(no_exist).as_posix() for p in no_exist.rglob("*") if p.is_file()}
    assert not (no_exist / "generation_config.json").exists()  # the export has it
    assert set(OPTIONAL_FILES) >= {"adapter_config.json", "model.safetensors.index.json"}

    script = textwrap.dedent(f"""
        import time, huggingface_hub, httpx2
        from huggingface_hub import try_to_load_from_cache
        from huggingface_hub.file_download import _CACHED_NO_EXIST
        attempts = []
        send = httpx2.Client.send
        httpx2.Client.send = lambda self, req, **k: attempts.append(str(req.url)) or send(self, req, **k)
        cache = {str(mirror.root)!r}
        assert try_to_load_from_cache({REPO!r}, "special_tokens_map.json", cache, revision={commit!r}) \\
            is _CACHED_NO_EXIST
        from transformers import AutoModelForCausalLM, AutoTokenizer
        t0 = time.time()
        tok = AutoTokenizer.from_pretrained({REPO!r}, revision="step64", cache_dir=cache, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained({REPO!r}, revision="step64", cache_dir=cache,
                                                     local_files_only=True)
        print("SECONDS", time.time() - t0, "ATTEMPTS", len(attempts), attempts[:3])
        assert tok.eos_token == "<|endoftext|>" and model.config.hidden_size == 16
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", OMP_NUM_THREADS="1")  # a closed port: fails fast
    started = time.time()
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ATTEMPTS 0 " in proc.stdout, proc.stdout
    assert float(proc.stdout.split("SECONDS")[1].split()[0]) < 10
    assert time.time() - started < 60
