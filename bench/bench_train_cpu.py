"""Training throughput on CPU: our DeepSpeed trainer vs a plain PyTorch loop, same model, data, steps.

    python bench/bench_train_cpu.py [--config config/config.yaml] [--steps 48] [--threads 1 2] [--repeat 3]
                                    [--out bench/results/train_cpu.md]

The model is the config's largest (by parameters). Both sides train it from the same
initialisation on the same batches (GPT-NeoX order over a random-token file of the config's
vocabulary and sequence length), with the same AdamW groups, GPT-NeoX LR schedule and gradient
clipping, for the same number of steps, each in a fresh process with fixed threads:

- deepspeed: `pythia-repro train` (ZeRO from the config, gloo, one rank), checkpoints only at
  step 0 and the end; per-step times from its metrics.jsonl.
- plain: forward, backward, clip_grad_norm_, AdamW.step() in a loop (no DeepSpeed, no
  torch.distributed, no checkpoints).

Reported per thread count (best of --repeat interleaved runs per side): median step time and
tokens/s over the steps after the first 3 (warm-up), CPU seconds per step, the process's wall and
CPU time including startup and checkpoints, and the largest per-step loss difference between the
two (same maths in the same order: ZeRO-1 in fp32 on one rank should give exactly 0).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
WARMUP_STEPS = 3


def prepare(config: Path, root: Path, steps: int) -> tuple[Path, str]:
    """A copy of `config` training its largest model for `steps` on random tokens; (config, model)."""
    from tokenizers import Tokenizer, models

    from pythia_repro.config import load_suite
    from pythia_repro.data.indexed import IndexedDataset, IndexedDatasetBuilder
    from pythia_repro.data.order import build_index_mappings

    cfg = yaml.safe_load(config.read_text())
    cfg["results_dir"] = str(root)
    cfg["interventions"] = []
    cfg["training"].update(train_iters=steps, segment_steps=steps,
                           checkpoints={"log_spaced_until": 0, "every": steps})
    suite = load_suite(cfg)
    biggest = max(suite.models, key=lambda m: m.shape.layers * m.shape.d_model ** 2)
    cfg["models"] = [{"size": biggest.size, "data": [biggest.data]}]
    path = root / "suite.yaml"
    path.write_text(yaml.safe_dump(cfg))
    suite = load_suite(path)

    vocab_size = suite.tokenizer.vocab_size
    vocab = {"<|endoftext|>": 0, "<|padding|>": 1, **{f"t{i}": i for i in range(2, vocab_size)}}
    suite.layout.tokenizer.parent.mkdir(parents=True, exist_ok=True)
    Tokenizer(models.WordLevel(vocab, unk_token="<|padding|>")).save(str(suite.layout.tokenizer))
    prefix = suite.data_prefix(biggest.data)
    rng = np.random.default_rng(0)
    with IndexedDatasetBuilder(str(prefix) + ".bin", np.uint16) as builder:
        needed = suite.num_samples * (suite.seq_length + 1)
        while builder.num_documents * 200 < 2 * needed:
            builder.add_document(np.append(rng.integers(2, vocab_size, size=int(rng.integers(20, 380))), 0))
        builder.finalize(str(prefix) + ".idx")
    sizes = np.asarray(IndexedDataset(prefix).sizes)
    build_index_mappings(prefix, sizes, suite.num_samples, suite.seq_length, biggest.seed, log=lambda _m: None)
    return path, suite.models[0].name


def plain_worker(config: Path, model_name: str, threads: int) -> dict:
    """The same training without DeepSpeed: what the engine costs on top of PyTorch."""
    import torch

    from pythia_repro.config import load_suite
    from pythia_repro.data.batch import TrainingOrder
    from pythia_repro.models.build import build_model
    from pythia_repro.train.batches import RankBatches
    from pythia_repro.train.optim import build_optimizer
    from pythia_repro.train.schedule import AnnealingLR, schedule_for
    from pythia_repro.train.trainer import vocab_size

    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    torch.utils.deterministic.fill_uninitialized_memory = False
    suite = load_suite(config)
    spec, training = suite.model(model_name), suite.training
    torch.manual_seed(spec.seed)
    model = build_model(spec.arch, spec.shape, vocab_size(suite, spec.shape), suite.seq_length, spec.seed)
    model.config.use_cache = False
    model.train()
    optimizer = build_optimizer(model, training, torch.device("cpu"))
    scheduler = AnnealingLR(optimizer, **schedule_for(training, spec.shape))
    order = TrainingOrder(suite.data_prefix(spec.data), suite.train_iters, suite.batch_schedule,
                          suite.seq_length, spec.seed, num_samples=suite.num_samples)
    micro = training.micro_batch_size or suite.global_batch_size
    batches = RankBatches(order, suite.batch_schedule, micro, 0, 1, torch.device("cpu"))
    rows = []
    for step in range(suite.train_iters):
        t0 = time.perf_counter()
        micro_batches = batches.micro_batches(step)
        total = 0.0
        for inputs, labels in micro_batches:
            logits = model(input_ids=inputs).logits
            loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1))
            (loss / len(micro_batches)).backward()
            total += loss.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), training.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        rows.append({"step": step + 1, "loss": total / len(micro_batches), "step_time_s": time.perf_counter() - t0})
    return {"rows": rows}


def run_side(side: str, config: Path, model: str, threads: int, workdir: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    if side == "deepspeed":
        cmd = [sys.executable, "-m", "pythia_repro.cli", "train", "--config", str(config), "--model", model,
               "--threads", str(threads), "--no-tensorboard"]
    else:
        cmd = [sys.executable, __file__, "--worker", "--config", str(config), "--model", model,
               "--threads", str(threads)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"{side} run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    if side == "deepspeed":
        from pythia_repro.config import load_suite
        from pythia_repro.train.metrics import read_metrics

        layout = load_suite(config).layout
        rows = read_metrics(layout.metrics(model))
        layout.metrics(model).unlink()  # the next thread count starts fresh
        import shutil

        shutil.rmtree(layout.checkpoints_dir(model))
    else:
        rows = json.loads(proc.stdout)["rows"]
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"rows": rows, "wall_s": wall, "cpu_s": cpu}


def summarize(result: dict, tokens_per_step: int) -> dict:
    times = [r["step_time_s"] for r in result["rows"][WARMUP_STEPS:]]
    median = statistics.median(times)
    return {"median_step_s": median, "tokens_per_s": tokens_per_step / median, "wall_s": result["wall_s"],
            "cpu_s": result["cpu_s"], "cpu_s_per_step": result["cpu_s"] / len(result["rows"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "config" / "config.yaml")
    parser.add_argument("--steps", type=int, default=48)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=3, help="runs per side and thread count; the fastest is kept")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "train_cpu.md")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(plain_worker(args.config, args.model, args.threads[0])))
        return

    from pythia_repro.config import load_suite
    from pythia_repro.models.build import count_parameters, meta_model

    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        config, model = prepare(args.config, Path(tmp), args.steps)
        suite = load_suite(config)
        spec = suite.model(model)
        vocab = spec.shape.padded_vocab(suite.tokenizer.vocab_size)
        params = count_parameters(meta_model(spec.arch, spec.shape, vocab, 128))
        tokens_per_step = suite.global_batch_size * suite.seq_length
        lines = [
            "# Training throughput on CPU: DeepSpeed trainer vs plain PyTorch loop",
            "",
            f"Model `{model}` ({spec.arch}, {params:,} parameters), global batch {suite.global_batch_size} x "
            f"{suite.seq_length} tokens (micro-batch {suite.training.micro_batch_size}), "
            f"{args.steps} steps, {suite.training.precision}, ZeRO stage {suite.training.zero_stage}, "
            f"deterministic algorithms on both sides. Machine: {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores, Python {platform.python_version()}.",
            f"Median step time over steps {WARMUP_STEPS + 1}..{args.steps}, best of {args.repeat} interleaved runs "
            "per row; wall and CPU time are the whole "
            "process (imports, model build, DeepSpeed setup, checkpoints at step 0 and the end for DeepSpeed).",
            "",
            "| threads | side | median step (ms) | tokens/s | CPU s/step (whole run) | wall (s) | CPU (s) |",
            "|---|---|---|---|---|---|---|",
        ]
        for threads in args.threads:
            # Interleaved repeats, the least disturbed (fastest median) kept: the machine is shared.
            runs = {"plain": [], "deepspeed": []}
            for _ in range(args.repeat):
                for side in runs:
                    runs[side].append(run_side(side, config, model, threads, Path(tmp)))
            results = {side: min(rs, key=lambda r: summarize(r, 1)["median_step_s"]) for side, rs in runs.items()}
            for side, result in results.items():
                s = summarize(result, tokens_per_step)
                lines.append(f"| {threads} | {side} | {1000 * s['median_step_s']:.1f} | {s['tokens_per_s']:,.0f} | "
                             f"{s['cpu_s_per_step']:.3f} | {s['wall_s']:.1f} | {s['cpu_s']:.1f} |")
                print(lines[-1], flush=True)
            diff = max(abs(a["loss"] - b["loss"]) for a, b in zip(results["plain"]["rows"],
                                                                   results["deepspeed"]["rows"], strict=True))
            ratio = (summarize(results["deepspeed"], 1)["median_step_s"]
                     / summarize(results["plain"], 1)["median_step_s"])
            lines.append(f"| {threads} | DeepSpeed / plain | {ratio:.2f}x step time | | | | |")
            lines.append(f"| {threads} | max per-step loss difference | {diff:.2e} | | | | |")
        load = os.getloadavg()
        lines += ["", f"Load average during the run (1/5/15 min): {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
                      "(others' work on a shared machine inflates every time above).",
                  "",
                  "Reading: one thread per process is what the default config's training jobs use (two jobs side "
                  "by side on two cores); there the DeepSpeed row minus the plain row is the engine's per-step cost, "
                  "and the wall/CPU columns add its fixed start-up (import, ZeRO setup, two checkpoints). With two "
                  "threads on two cores, any other running process makes OpenMP's threads wait for each other and "
                  "a step takes anywhere from 0.2 to 3 s, whichever side: compare those rows only on an idle "
                  "machine."]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
