"""Testing helper: a tiny suite with its data stage already done, and the CLI in a subprocess.

`build_tiny_suite(root, **training)` writes, in well under a second, the config, a word-level
tokenizer whose vocabulary holds Pythia's special tokens and the gender-swap pronouns, random
documents as a GPT-NeoX token file, and GPT-NeoX's index maps for the suite; `cli(...)` runs
`pythia-repro` in a fresh interpreter. Shared by the training, hardening and analysis tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from pythia_repro.config import load_suite
from pythia_repro.data.indexed import IndexedDataset, IndexedDatasetBuilder
from pythia_repro.data.order import build_index_mappings
from pythia_repro.layout import Layout

PRONOUNS = ["ĠHe", "ĠShe", "Ġhe", "Ġshe", "Ġhis", "Ġher", "Ġhim"]


def tiny_config(root: Path, seq_length: int = 16, **training) -> dict:
    return {
        "suite": "t",
        "results_dir": str(root),
        "name_prefix": "pythia",
        "seed": 1234,
        "corpus": {"source": "synthetic"},
        "tokenizer": {"source": "train"},
        "data": {"variants": ["standard"], "seq_length": seq_length},
        "sizes": {"pico": {"layers": 2, "d_model": 32, "heads": 2, "ffn": 64, "lr": 1e-2, "min_lr": 1e-3}},
        "models": [{"size": "pico", "data": ["standard"]}],
        "interventions": [{"name": "genderswap", "base": "pythia-pico", "branch_fraction": 0.25,
                           "substitution": "gender_swap"}],
        "training": {
            "train_iters": 8, "global_batch_size": 4, "micro_batch_size": 2, "segment_steps": 4,
            "warmup_fraction": 0.25, "precision": "fp32", "zero_stage": 1,
            "checkpoints": {"log_spaced_until": 2, "every": 4}, "log_every": 2, **training,
        },
    }


def build_tiny_suite(root: Path, seq_length: int = 16, numbers: bool = False, **training) -> Path:
    """Write config + tokenizer + token file + index maps under `root`; return the config path.
    `numbers`: the documents also hold number words, so term-frequency counts are not empty."""
    cfg = tiny_config(root, seq_length, **training)
    path = root / "suite.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    suite = load_suite(path)
    layout = Layout(suite.root)

    vocab = {"<|endoftext|>": 0, "<|padding|>": 1}
    for word in PRONOUNS + [f"Ġw{i}" for i in range(100)] + ([f"Ġ{i}" for i in range(10)] if numbers else []):
        vocab[word] = len(vocab)
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<|padding|>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tokenizer.decoder = decoders.ByteLevel()
    layout.tokenizer.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(layout.tokenizer))

    rng = np.random.default_rng(0)
    for variant in suite.variants:
        prefix = layout.data_prefix(variant)
        with IndexedDatasetBuilder(str(prefix) + ".bin", np.uint16) as builder:
            for _ in range(60):
                doc = rng.integers(2, len(vocab), size=int(rng.integers(3, 30)))
                builder.add_document(np.append(doc, 0))
            builder.finalize(str(prefix) + ".idx")
        sizes = IndexedDataset(prefix).sizes
        for seed in sorted({m.seed for m in suite.models}):
            build_index_mappings(prefix, np.asarray(sizes), suite.num_samples, suite.seq_length, seed,
                                 log=lambda _m: None)
    return path


def cli(*args: str, env: dict | None = None, check: bool = True, timeout: float = 300,
        signal_at: tuple[int, str] | None = None) -> subprocess.CompletedProcess:
    """Run `pythia-repro ARGS` in a fresh interpreter (DeepSpeed sets up torch.distributed globally);
    `signal_at=(STEP, "TERM")` makes the trainer signal itself after STEP (testing.step_signal)."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0", **(env or {})}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        full_env.pop(key, None)
    entry = ["pythia_repro.testing.step_signal", str(signal_at[0]), signal_at[1]] if signal_at else ["pythia_repro.cli"]
    proc = subprocess.run([sys.executable, "-m", *entry, *args], env=full_env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"pythia-repro {' '.join(args)} exited {proc.returncode}\n{proc.stderr[-4000:]}")
    return proc
