"""Memorization scoring: ours (teacher-forced pass + cached partial decoding) vs Pythia's HF generate.

Same model, same sequences; asserts identical scores, reports sequences/s and speedups for full
scores and for memorized-only. Models:

- tiny: a micro-shaped GPT-NeoX trained here for a few hundred steps on repeated + random
  sequences, so a realistic share (~10%) is memorized and the partial path runs on the rest;
- 160m: pythia-160m's shape with random weights (nothing memorized: the partial path's worst case).

    .venv/bin/python bench/bench_memorization.py                 # CPU, writes bench/results/memorization.md
    .venv/bin/python bench/bench_memorization.py --tiny-dir /tmp/tiny   # train the tiny model once, reuse it
    .venv/bin/python bench/bench_memorization.py --device cuda --n-160m 8192 --batch-size 1024 --dtype float16
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from pythia_repro.analysis.memorization import generate_scores, score_sequences
from pythia_repro.atomic import write_text

K = L = 32
RESULTS = Path(__file__).resolve().parent / "results" / "memorization.md"


def tiny_model(n: int, device: str) -> tuple[GPTNeoXForCausalLM, np.ndarray]:
    """A micro-shaped model trained until ~10% of the probe sequences are memorized, and the probes."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    vocab = 512
    repeated = rng.integers(2, vocab, (n // 10, K + L))
    cfg = GPTNeoXConfig(vocab_size=vocab, hidden_size=128, num_hidden_layers=3, num_attention_heads=4,
                        intermediate_size=512, max_position_embeddings=128, eos_token_id=0, bos_token_id=0)
    model = GPTNeoXForCausalLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(300):
        batch = np.concatenate([repeated[rng.choice(len(repeated), 24)], rng.integers(2, vocab, (8, K + L))])
        x = torch.as_tensor(batch)
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    # Probes: the repeated sequences (mostly memorized), half of them with one continuation token
    # edited (partial, late first mismatch), and unseen random ones.
    edited = repeated[: len(repeated) // 2].copy()
    cols = K + rng.integers(4, L, len(edited))
    edited[np.arange(len(edited)), cols] = rng.integers(2, vocab, len(edited))
    probes = np.concatenate([repeated, edited, rng.integers(2, vocab, (n - len(repeated) - len(edited), K + L))])
    return model.to(device).eval(), probes


def cached_tiny_model(n: int, device: str, directory: Path | None) -> tuple[GPTNeoXForCausalLM, np.ndarray]:
    """tiny_model, saved to / loaded from `directory` (its training is minutes on a loaded CPU)."""
    if directory is not None and (directory / "probes.npy").is_file():
        probes = np.load(directory / "probes.npy")
        if len(probes) == n:
            return GPTNeoXForCausalLM.from_pretrained(str(directory)).to(device).eval(), probes
    model, probes = tiny_model(n, device)
    if directory is not None:
        model.save_pretrained(str(directory))
        np.save(directory / "probes.npy", probes)
    return model, probes


def model_160m(n: int, device: str) -> tuple[GPTNeoXForCausalLM, np.ndarray]:
    torch.manual_seed(0)
    cfg = GPTNeoXConfig(vocab_size=50304, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                        intermediate_size=3072, max_position_embeddings=2048, rotary_pct=0.25,
                        eos_token_id=0, bos_token_id=0)
    model = GPTNeoXForCausalLM(cfg).to(device).eval()
    return model, np.random.default_rng(1).integers(2, 50304, (n, K + L))


def _timed(fn, device: str):
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def bench(name: str, model, seqs: np.ndarray, batch_size: int, device: str, rounds: int) -> dict:
    """Median time of each method over `rounds` interleaved rounds (fair on a shared, loaded machine)."""
    score_sequences(model, seqs[:8], batch_size=8)  # warm-up (allocator, kernels)
    generate_scores(model, seqs[:8], K, L, 8)
    methods = {
        "generate": lambda: generate_scores(model, seqs, K, L, batch_size),
        "full": lambda: score_sequences(model, seqs, batch_size=batch_size),
        "fast": lambda: score_sequences(model, seqs, batch_size=batch_size, memorized_only=True),
    }
    times: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(rounds):
        out = {}
        for method, fn in methods.items():
            out[method], t = _timed(fn, device)
            times[method].append(t)
        (ref, ref_mem), (ours, mem), (_, fast_mem) = out["generate"], out["full"], out["fast"]
        assert np.array_equal(ours, ref), f"{name}: scores differ from generate on {(ours != ref).sum()} sequences"
        assert np.array_equal(mem, ref_mem) and np.array_equal(fast_mem, ref_mem), f"{name}: memorized flags differ"
    t_gen, t_full, t_fast = (float(np.median(times[m])) for m in methods)
    n = len(seqs)
    return {"model": name, "n": n, "batch": batch_size, "memorized": float(ref_mem.mean()),
            "partial": float(((ref > 0) & (ref < 1)).mean()), "generate": n / t_gen, "full": n / t_full,
            "fast": n / t_fast, "full_x": t_gen / t_full, "fast_x": t_gen / t_fast}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", help="model dtype on --device (Pythia ran float16 on GPU)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--n-tiny", type=int, default=2048)
    p.add_argument("--n-160m", type=int, default=64, help="0 skips it (CPU: ~1 s per sequence per method)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (median reported)")
    p.add_argument("--tiny-dir", type=Path, help="save the trained tiny model here, or load it if there")
    p.add_argument("--output", type=Path, default=RESULTS)
    args = p.parse_args()
    dtype = getattr(torch, args.dtype)
    rows = []
    model, seqs = cached_tiny_model(args.n_tiny, args.device, args.tiny_dir)
    rows.append(bench("tiny (micro shape, trained)", model.to(dtype), seqs, args.batch_size, args.device,
                      args.rounds))
    if args.n_160m:
        model, seqs = model_160m(args.n_160m, args.device)
        rows.append(bench("160m shape, random weights", model.to(dtype), seqs, min(args.batch_size, args.n_160m),
                          args.device, args.rounds))
    machine = (torch.cuda.get_device_name() if args.device.startswith("cuda") else
               f"{platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}, "
               f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    lines = [
        "# Memorization scoring: ours vs HF generate (Pythia's eval_memorization.py)",
        "",
        f"{datetime.date.today()}, {args.device} ({machine}), {args.dtype}, k = l = {K}. "
        "Scores asserted identical to generate's on every sequence, every round. seq/s = sequences per "
        f"second, median of {args.rounds} interleaved rounds (generate, ours full, ours memorized-only).",
        "",
        "| model | seqs | batch | memorized | partial | generate seq/s | ours full seq/s | speedup | "
        "ours memorized-only seq/s | speedup |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['n']} | {r['batch']} | {r['memorized']:.1%} | {r['partial']:.1%} | "
                     f"{r['generate']:,.1f} | {r['full']:,.1f} | {r['full_x']:.1f}x | {r['fast']:,.1f} | "
                     f"{r['fast_x']:.1f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    write_text(args.output, text)


if __name__ == "__main__":
    main()
