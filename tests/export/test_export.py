"""Export: a trainer checkpoint (ZeRO 0-3, gpt-neox/llama/palm) becomes a transformers directory
that loads with the Auto classes and gives the trainer's logits; broken checkpoints fail naming
the path; a finished export is not redone."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest
import torch

from pythia_repro.export.checkpoint import CheckpointError
from pythia_repro.export.hf import export_checkpoint, export_suite_checkpoint
from pythia_repro.layout import Layout
from pythia_repro.testing.checkpoints import CHECKPOINTS, PROBE_IDS, reference_logits_path


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pythia_repro.cli", *args], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize(("model", "step", "stage"), CHECKPOINTS,
                         ids=[f"{m}-step{s}-zero{z}" for m, s, z in CHECKPOINTS])
def test_export_gives_the_trainers_logits(tiny_suite, exported, model, step, stage):
    from transformers import AutoModelForCausalLM

    _, suite = tiny_suite
    out = exported(model, step)
    hf = AutoModelForCausalLM.from_pretrained(out)
    hf.eval()
    with torch.no_grad():
        logits = hf(input_ids=torch.tensor(PROBE_IDS)).logits
    reference = torch.load(reference_logits_path(Layout(suite.root).model_dir(model), step, stage))
    torch.testing.assert_close(logits, reference, rtol=0, atol=1e-5)

    info = json.loads((out / "export.json").read_text())
    assert (info["model"], info["step"], info["dtype"]) == (model, step, "float32")
    assert info["manifest"]["zero_stage"] == stage
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == [type(hf).__name__]
    assert (out / "model.safetensors").is_file() and (out / "generation_config.json").is_file()


def test_tokenizer_is_the_suites_with_pythia_special_tokens(tiny_suite, exported):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    _, suite = tiny_suite
    tok = AutoTokenizer.from_pretrained(exported("pythia-pico", 4))
    raw = Tokenizer.from_file(str(Layout(suite.root).tokenizer))
    text = "The old doctor opened the window.<|endoftext|> She walked"
    assert tok(text)["input_ids"] == raw.encode(text).ids
    assert tok.eos_token == tok.bos_token == "<|endoftext|>" and tok.eos_token_id == 0
    assert tok.pad_token == "<|padding|>" and tok.pad_token_id == 1
    assert tok.model_max_length == suite.seq_length
    assert json.loads((exported("pythia-pico", 4) / "tokenizer_config.json").read_text())["tokenizer_class"] == \
        "PreTrainedTokenizerFast"


def test_exported_neox_tokenizer_matches_pythia(neox_tokenizer_path, tmp_path):
    from transformers import AutoTokenizer

    from pythia_repro.export.hf import build_tokenizer

    build_tokenizer(neox_tokenizer_path, 2048).save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert tok("Hello, I am")["input_ids"] == [12092, 13, 309, 717]
    assert (tok.eos_token_id, tok.bos_token_id, tok.pad_token_id) == (0, 0, 1)


def test_palm_export_stores_the_tied_embedding_once(exported):
    from safetensors import safe_open

    with safe_open(exported("pythia-pico-palm", 8) / "model.safetensors", "pt") as f:
        keys = set(f.keys())
    assert "model.embed_tokens.weight" in keys and "lm_head.weight" not in keys


def test_half_precision_export(tiny_suite, tmp_path):
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    _, suite = tiny_suite
    tag = Layout(suite.root).checkpoint("pythia-pico-llama", 4)
    out = tmp_path / "fp16"
    export_checkpoint(tag, out, dtype="float16")
    with safe_open(out / "model.safetensors", "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    assert json.loads((out / "config.json").read_text())["dtype"] == "float16"
    hf = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    with torch.no_grad():
        logits = hf(input_ids=torch.tensor(PROBE_IDS)).logits
    reference = torch.load(reference_logits_path(Layout(suite.root).model_dir("pythia-pico-llama"), 4, 1))
    torch.testing.assert_close(logits, reference, rtol=0, atol=5e-2)


def test_cli_export_is_atomic_and_skips_finished_work(tiny_suite, tmp_path, caplog):
    config, suite = tiny_suite
    out = Layout(tmp_path).export_dir("pythia-pico-palm", 4)
    first = cli("export", "--config", str(config), "--model", "pythia-pico-palm", "--step", "4", "--output", str(out))
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout.strip().splitlines()[-1])["architecture"] == "CohereForCausalLM"
    assert sorted(p.name for p in out.parent.iterdir()) == ["step4"]  # no temporary siblings left
    weights = out / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    with caplog.at_level("INFO", logger="pythia_repro.export.hf"):
        export_suite_checkpoint(suite, "pythia-pico-palm", 4, out)
    assert "already exported" in caplog.text
    assert weights.stat().st_mtime_ns == stamp
    export_suite_checkpoint(suite, "pythia-pico-palm", 4, out, force=True)
    assert weights.stat().st_mtime_ns != stamp


def test_missing_checkpoint_is_a_clear_error(tiny_suite, tmp_path):
    config, suite = tiny_suite
    result = cli("export", "--config", str(config), "--model", "pythia-pico-llama", "--step", "8",
                 "--output", str(tmp_path / "out"))
    assert result.returncode == 2
    assert str(Layout(suite.root).checkpoint("pythia-pico-llama", 8)) in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def _copy_checkpoint(suite, model, step, tmp_path):
    src = Layout(suite.root).checkpoint(model, step)
    dst = tmp_path / "checkpoints" / f"step{step}"
    shutil.copytree(src, dst)
    return dst


def test_checkpoint_without_manifest_is_incomplete(tiny_suite, tmp_path):
    _, suite = tiny_suite
    tag = _copy_checkpoint(suite, "pythia-pico", 1, tmp_path)
    (tag / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match=rf"{tag / 'manifest.json'}: no manifest"):
        export_checkpoint(tag, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_manifest_of_another_step_is_refused(tiny_suite, tmp_path):
    _, suite = tiny_suite
    tag = _copy_checkpoint(suite, "pythia-pico", 1, tmp_path)
    with pytest.raises(CheckpointError, match="checkpoint of step 1, expected 2"):
        export_checkpoint(tag, tmp_path / "out", step=2)


@pytest.mark.parametrize(("model", "step", "victim"), [
    ("pythia-pico", 0, "mp_rank_00_model_states.pt"),                 # ZeRO 0: the module weights
    ("pythia-pico", 1, "zero_pp_rank_0_mp_rank_00_optim_states.pt"),  # ZeRO 1: the fp32 partitions
])
def test_truncated_checkpoint_file_is_named(tiny_suite, tmp_path, model, step, victim):
    _, suite = tiny_suite
    tag = _copy_checkpoint(suite, model, step, tmp_path)
    path = tag / victim
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    # Verified before use: the message names the checkpoint and the damaged file.
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(tag))}: corrupt checkpoint: {victim}: unreadable"):
        export_checkpoint(tag, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_export_of_unknown_model_names_the_known_ones(tiny_suite, tmp_path):
    _, suite = tiny_suite
    from pythia_repro.config import ConfigError

    with pytest.raises(ConfigError, match="pythia-pico-palm"):
        export_suite_checkpoint(suite, "pythia-nope", 4, tmp_path / "out")
