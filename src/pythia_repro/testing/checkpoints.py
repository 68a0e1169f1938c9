"""Real DeepSpeed checkpoints of tiny suite models, made the way the trainer makes them.

A testing helper (tests/export, tests/evaluate, bench/bench_eval.py), not used by the pipeline:
a tiny suite config (own size
`pico`), a small byte-level BPE with Pythia's special tokens, and for each requested
(model, step, zero stage) a DeepSpeed engine on CPU (gloo, one process) that takes one
AdamW step, `save_checkpoint(save_dir, tag=f"step{N}")`, then the manifest written last.
The trainer-side logits on a fixed input are stored beside it for equality checks.

Run as a script in a subprocess (DeepSpeed initialises torch.distributed globally):
    python -m pythia_repro.testing.checkpoints SUITE.yaml JOBS.json
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from pythia_repro.layout import CHECKPOINT_MANIFEST, Layout, checkpoint_tag

PROBE_IDS = [[5, 17, 42, 99, 7, 250, 3, 64, 128, 11, 0, 33], [200, 8, 8, 9, 150, 77, 1, 2, 90, 101, 44, 12]]

# (model, step, ZeRO stage) made for the export/upload tests: gpt-neox at every stage, llama, and
# palm (tied embeddings); palm's step 8 is the final step, so it also becomes `main` when uploaded.
CHECKPOINTS = [
    ("pythia-pico", 0, 0),
    ("pythia-pico", 1, 1),
    ("pythia-pico", 2, 2),
    ("pythia-pico", 4, 3),
    ("pythia-pico-llama", 4, 1),
    ("pythia-pico-palm", 4, 0),
    ("pythia-pico-palm", 8, 2),
]

WORDS = (
    "the a river mountain city garden doctor teacher she he walked carried found opened quiet bright "
    "old new morning evening letter window story market bridge lantern"
).split()


def tiny_config(root: Path, **overrides) -> dict:
    cfg = {
        "suite": "tiny",
        "results_dir": str(root),
        "name_prefix": "pythia",
        "seed": 1234,
        "corpus": {"source": "synthetic", "synthetic": {"num_shards": 1, "docs_per_shard": 10, "heldout_docs": 30}},
        "tokenizer": {"source": "train", "vocab_size": 300},
        "data": {"variants": ["standard", "deduped"], "seq_length": 32},
        "sizes": {"pico": {"layers": 2, "d_model": 32, "heads": 4, "ffn": 64, "lr": 1e-3, "min_lr": 1e-4}},
        "models": [
            {"size": "pico", "arch": "gpt-neox", "data": ["standard", "deduped"]},
            {"size": "pico", "arch": "llama", "data": ["standard"]},
            {"size": "pico", "arch": "palm", "data": ["standard"]},
        ],
        "training": {
            "train_iters": 8,
            "global_batch_size": 2,
            "micro_batch_size": 2,
            "segment_steps": 4,
            "precision": "fp32",
            "checkpoints": {"log_spaced_until": 4, "every": 4},
        },
        "export": {"dtype": "float32"},
        "upload": {"target": "mirror", "namespace": "tiny-org"},
        "evaluate": {"steps": [0, 4, 8], "tasks": ["lambada_heldout"], "num_fewshot": [0], "batch_size": 8},
    }
    for key, value in overrides.items():
        cfg[key] = value
    return cfg


def heldout_texts(n: int = 30, seed: int = 0) -> list[str]:
    import random

    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        sentences = []
        for _ in range(rng.randint(2, 4)):
            words = [rng.choice(WORDS) for _ in range(rng.randint(5, 10))]
            sentences.append(" ".join(words).capitalize() + ".")
        texts.append(" ".join(sentences))
    return texts


def write_tokenizer(path: Path, vocab_size: int = 300, texts: list[str] | None = None) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|padding|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts if texts is not None else heldout_texts(200, seed=1), trainer=trainer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return path


def write_heldout(path: Path, n: int = 30) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for text in heldout_texts(n):
            fh.write(json.dumps({"text": text, "meta": {"pile_set_name": "heldout"}}) + "\n")
    return path


def make_suite(root: Path, **overrides) -> Path:
    """Config file + tokenizer + held-out docs of a tiny suite under `root`; returns the config path."""
    from pythia_repro.config import load_suite

    cfg = tiny_config(root, **overrides)
    path = root / "tiny.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    layout = Layout(load_suite(path).root)
    write_tokenizer(layout.tokenizer)
    write_heldout(layout.heldout_file)
    return path


def make_checkpoints(config_path: Path, jobs: list[dict], timeout: int = 300) -> None:
    """Run this module in a subprocess: jobs = [{"model", "step", "zero_stage"}]."""
    jobs_path = Path(config_path).with_suffix(".jobs.json")
    jobs_path.write_text(json.dumps(jobs))
    env = dict(os.environ, DS_ACCELERATOR="cpu", TOKENIZERS_PARALLELISM="false")
    subprocess.run(
        [sys.executable, "-m", __name__, str(config_path), str(jobs_path)],
        check=True, env=env, timeout=timeout,
    )


def reference_logits_path(model_dir: Path, step: int, stage: int) -> Path:
    return Path(model_dir) / f"reference_logits_step{step}.pt"


def _save_one(suite, engine_factory, model_name: str, step: int, stage: int) -> None:
    import torch
    from tokenizers import Tokenizer

    from pythia_repro.models.build import build_model

    layout = Layout(suite.root)
    spec = suite.model(model_name)
    vocab = spec.shape.padded_vocab(Tokenizer.from_file(str(layout.tokenizer)).get_vocab_size())
    model = build_model(spec.arch, spec.shape, vocab, suite.seq_length, seed=spec.seed + step)
    engine = engine_factory(model, stage)
    ids = torch.tensor(PROBE_IDS)
    if step > 0:  # one optimizer step so the saved weights are not the initial ones
        loss = engine(input_ids=ids, labels=ids).loss
        engine.backward(loss)
        engine.step()
    save_dir = layout.checkpoints_dir(model_name)
    engine.save_checkpoint(str(save_dir), tag=checkpoint_tag(step))
    engine.eval()
    with torch.no_grad():
        logits = engine(input_ids=ids).logits.float()
    torch.save(logits, reference_logits_path(layout.model_dir(model_name), step, stage))
    hf = engine.module.config.to_dict()
    manifest = {
        "step": step, "model": model_name, "arch": spec.arch, "size": spec.size, "shape": spec.shape.as_dict(),
        "vocab_size": vocab, "seq_length": suite.seq_length, "hf_config": hf,
        "tokenizer": str(layout.tokenizer), "zero_stage": stage,
        "samples_consumed": suite.batch_schedule.samples_before(step), "complete": True,
    }
    (layout.checkpoint(model_name, step) / CHECKPOINT_MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
    marker = layout.segment_marker(model_name, suite.segment_for_step(model_name, step))
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"step": step}))


def _main(config_path: str, jobs_path: str) -> None:
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    if "MASTER_PORT" not in os.environ:  # a free port: tests may run beside other DeepSpeed jobs
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(sock.getsockname()[1])
    for k, v in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")):
        os.environ.setdefault(k, v)
    import deepspeed
    import torch
    import torch.distributed as dist

    from pythia_repro.config import load_suite

    # The shared-memory allreduce kernel only speeds up multi-rank CPU runs; building it
    # costs ~1 min of compilation on a fresh machine, so a single-rank test skips it.
    # (`deepspeed.comm.torch` as an attribute is the torch module re-exported: use sys.modules.)
    sys.modules["deepspeed.comm.torch"].build_shm_op = lambda: None
    if not dist.is_initialized():
        dist.init_process_group("gloo", rank=0, world_size=1)

    def engine_factory(model, stage):
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        config = {
            "train_batch_size": 2, "train_micro_batch_size_per_gpu": 2,
            "zero_optimization": {"stage": stage}, "zero_allow_untested_optimizer": True,
            "fp16": {"enabled": False}, "bf16": {"enabled": False}, "steps_per_print": 10**9,
        }
        engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
        return engine

    suite = load_suite(config_path)
    for job in json.loads(Path(jobs_path).read_text()):
        _save_one(suite, engine_factory, job["model"], int(job["step"]), int(job["zero_stage"]))


if __name__ == "__main__":
    _main(sys.argv[1], sys.argv[2])
