"""Training throughput and MFU on one GPU: Pythia 160m, 410m and 1.4b at sequence length 2048, bf16.

    python bench/bench_train_gpu.py [--sizes 160m 410m 1.4b] [--micro-batch 8] [--steps 20]
                                    [--no-activation-checkpointing] [--out bench/results/train_gpu.md]

Each size runs in a fresh process through the trainer's own code path (`build_engine` and
`train_step` of pythia_repro.train.trainer: DeepSpeed ZeRO-1, bf16, GPT-NeoX AdamW and schedule,
flash-attn 2 when installed, else PyTorch SDPA) on random tokens of Pythia's padded vocabulary
(50304): throughput does not depend on the data. One step is one micro-batch (no accumulation).
Reported: median step time after the warm-up steps, tokens/s and MFU in PaLM's definition
(6N + 12 L H Q T FLOPs per token, N without the input embedding) against the GPU's dense bf16
peak (H100 SXM 989 TFLOP/s, A100 312 TFLOP/s; --peak-flops for others), and peak memory.

Pythia's reference: 25-34% MFU on A100s with GPT-NeoX (PYTHIA.md §1). Needs a CUDA GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VOCAB = 50304  # GPT-NeoX-20B's 50277 entries padded to a multiple of 128
SEQ = 2048


def worker(size: str, micro_batch: int, steps: int, warmup: int, checkpointing: bool,
           peak_override: float | None) -> dict:
    import torch

    from pythia_repro.config import CheckpointSchedule, ModelSpec, TrainingSection
    from pythia_repro.models.sizes import SIZES
    from pythia_repro.train.metrics import peak_flops
    from pythia_repro.train.trainer import RunOptions, build_engine, setup_runtime, train_step

    _, device = setup_runtime(RunOptions(deterministic=False))
    training = TrainingSection(
        train_iters=143000, global_batch_size=micro_batch, micro_batch_size=micro_batch, warmup_fraction=0.01,
        weight_decay=0.1, adam_beta1=0.9, adam_beta2=0.95, adam_eps=1e-8, grad_clip=1.0, precision="bf16",
        zero_stage=1, activation_checkpointing=checkpointing, ranks=1, device="cuda",
        checkpoints=CheckpointSchedule(log_spaced_until=512, every=1000), log_every=10, lr_schedule="neox",
        lr_constant_steps=10000, z_loss=0.0)
    spec = ModelSpec(f"pythia-{size}", size, "gpt-neox", "standard", 1234, SIZES[size])
    built = build_engine(spec, training, SEQ, VOCAB, device, world_size=1)
    generator = torch.Generator(device=device).manual_seed(0)
    times = []
    for _ in range(warmup + steps):
        tokens = torch.randint(0, VOCAB, (micro_batch, SEQ + 1), device=device, generator=generator)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = train_step(built.engine, [(tokens[:, :-1], tokens[:, 1:])])
        loss.item()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    step = statistics.median(times[warmup:])
    tokens_per_s = micro_batch * SEQ / step
    peak = peak_flops(torch.cuda.get_device_name(device), peak_override)
    return {
        "size": size, "device": torch.cuda.get_device_name(device), "attention": built.attention,
        "micro_batch": micro_batch, "activation_checkpointing": checkpointing, "median_step_s": step,
        "tokens_per_s": tokens_per_s, "flops_per_token": built.flops_per_token,
        "mfu": tokens_per_s * built.flops_per_token / peak if peak else None,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["160m", "410m", "1.4b"])
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--activation-checkpointing", action=argparse.BooleanOptionalAction, default=True,
                        help="as Pythia trained (default on)")
    parser.add_argument("--peak-flops", type=float, help="dense bf16 peak FLOP/s of the GPU if not in the table")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "train_gpu.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.micro_batch, args.steps, args.warmup,
                                args.activation_checkpointing, args.peak_flops)))
        return

    rows = []
    for size in args.sizes:
        cmd = [sys.executable, __file__, "--worker", size, "--micro-batch", str(args.micro_batch),
               "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--activation-checkpointing" if args.activation_checkpointing else "--no-activation-checkpointing"]
        if args.peak_flops:
            cmd += ["--peak-flops", str(args.peak_flops)]
        env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode:
            print(f"{size}: failed ({proc.returncode})\n{proc.stderr[-3000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] else "n/a"
        print(f"{size}: {r['tokens_per_s']:,.0f} tokens/s, MFU {mfu}, {r['peak_memory_gib']:.1f} GiB", flush=True)
    if not rows:
        raise SystemExit("no size ran")
    lines = [
        f"# Training throughput on one GPU ({rows[0]['device']})",
        "",
        f"Sequence length {SEQ}, bf16, DeepSpeed ZeRO-1, micro-batch {args.micro_batch}, activation checkpointing "
        f"{'on' if args.activation_checkpointing else 'off'}, median of {args.steps} steps after {args.warmup} "
        "warm-up steps. MFU: PaLM's definition against the GPU's dense bf16 peak.",
        "",
        "| size | attention | step (ms) | tokens/s | FLOPs/token | MFU | peak memory (GiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] else "n/a"
        lines.append(f"| {r['size']} | {r['attention']} | {1000 * r['median_step_s']:.0f} | {r['tokens_per_s']:,.0f} "
                     f"| {r['flops_per_token']:.3e} | {mfu} | {r['peak_memory_gib']:.1f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
