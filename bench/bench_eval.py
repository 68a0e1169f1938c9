"""Evaluation throughput: our `pythia-repro evaluate` job vs the harness's own `lm_eval` CLI.

    python bench/bench_eval.py [--size micro] [--docs 200] [--batch-size 32] [--repeat 2]
                               [--out bench/results/eval.md]

Both run on the same exported checkpoint and the same task (lambada_heldout on synthetic
held-out documents, the default config's task) with the same device and batch size:

    ours:    pythia-repro evaluate --config SUITE --model M --step N --input DIR --tasks-dir T
    lm_eval: lm_eval --model hf --model_args pretrained=DIR --tasks lambada_heldout
             --include_path T --device cpu --batch_size B --output_path O --log_samples

(the second line is also the proof that the plain harness command works on our export). Reported:
wall time of each command end to end (process start to exit) and documents/s over it, plus our
job's own split into model load and evaluation; then the answers compared, aggregate metrics and
every document's loglikelihood, which must be identical.

The checkpoint is a real DeepSpeed checkpoint of a suite size (default `micro`, gpt-neox) made
like the trainer makes it (pythia_repro.testing.checkpoints), after one optimizer step: throughput
does not depend on how well the model is trained.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pythia_repro.testing import checkpoints as ckpt_factory

REPO = Path(__file__).resolve().parents[1]


def offline_env() -> dict:
    return dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                TOKENIZERS_PARALLELISM="false", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")


def heldout_docs(n: int) -> list[str]:
    """The synthetic mini-Pile's held-out documents (as the default config evaluates on)."""
    try:
        from pythia_repro.data.synthetic import SyntheticSpec, generate

        spec = SyntheticSpec(num_shards=1, docs_per_shard=50, heldout_docs=n, exact_duplicate_rate=0.0,
                             near_duplicate_rate=0.0, seed=1234)
        return [d.text for d in generate(spec).heldout]
    except ImportError:
        return ckpt_factory.heldout_texts(n)


def build(work: Path, size: str, docs: int, batch_size: int, seq_length: int) -> tuple[Path, Path, Path]:
    """Suite config, exported checkpoint, task dir."""
    from pythia_repro.config import load_suite
    from pythia_repro.evaluate.suite_tasks import write_task_dir
    from pythia_repro.export.hf import export_suite_checkpoint

    config = ckpt_factory.make_suite(
        work,
        models=[{"size": size, "arch": "gpt-neox", "data": ["standard"]}],
        data={"variants": ["standard"], "seq_length": seq_length},
        tokenizer={"source": "train", "vocab_size": 4096},
        evaluate={"steps": [8], "tasks": ["lambada_heldout"], "num_fewshot": [0], "batch_size": batch_size,
                  "device": "cpu"},
    )
    suite = load_suite(config)
    texts = heldout_docs(docs)
    ckpt_factory.write_tokenizer(suite.layout.tokenizer, vocab_size=4096, texts=texts)
    heldout = suite.layout.heldout_file
    heldout.write_text("".join(json.dumps({"text": t, "meta": {"pile_set_name": "heldout"}}) + "\n" for t in texts))
    model = suite.models[0].name
    ckpt_factory.make_checkpoints(config, [dict(model=model, step=8, zero_stage=1)])
    model_dir = suite.layout.export_dir(model, 8)
    export_suite_checkpoint(suite, model, 8, model_dir)
    tasks_dir = work / "tasks"
    write_task_dir(suite, tasks_dir)
    return config, model_dir, tasks_dir


def timed(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    result = subprocess.run(cmd, env=offline_env(), capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.stderr.write(result.stderr[-5000:])
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return wall, result


def run_ours(config: Path, model: str, model_dir: Path, tasks_dir: Path, out: Path) -> dict:
    cmd = [sys.executable, "-m", "pythia_repro.cli", "evaluate", "--config", str(config), "--model", model,
           "--step", "8", "--input", str(model_dir), "--tasks-dir", str(tasks_dir), "--output",
           str(out / "result.json"), "--samples", str(out / "samples.jsonl")]
    wall, _ = timed(cmd)
    record = json.loads((out / "result.json").read_text())
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    return {"wall": wall, "record": record, "results": record["runs"][0]["results"]["lambada_heldout"],
            "samples": samples}


def run_lm_eval(model_dir: Path, tasks_dir: Path, batch_size: int, out: Path) -> dict:
    cmd = [str(Path(sys.executable).parent / "lm_eval"), "--model", "hf", "--model_args", f"pretrained={model_dir}",
           "--tasks", "lambada_heldout", "--include_path", str(tasks_dir), "--device", "cpu", "--batch_size",
           str(batch_size), "--output_path", str(out), "--log_samples"]
    wall, _ = timed(cmd)
    (results,) = out.rglob("results_*.json")
    (samples,) = out.rglob("samples_lambada_heldout_*.jsonl")
    data = json.loads(results.read_text())
    return {"wall": wall, "data": data, "results": data["results"]["lambada_heldout"],
            "samples": [json.loads(line) for line in samples.read_text().splitlines()]}


def compare(ours: dict, theirs: dict) -> dict:
    metrics = ("acc,none", "perplexity,none", "acc_stderr,none", "perplexity_stderr,none")
    mismatched = [m for m in metrics if ours["results"][m] != theirs["results"][m]]
    mine = {s["doc_id"]: s for s in ours["samples"]}
    differing = 0
    for s in theirs["samples"]:
        a = [[float(ll), str(g)] for ll, g in s["filtered_resps"]]
        b = [[float(ll), str(g)] for ll, g in mine[s["doc_id"]]["filtered_resps"]]
        differing += a != b
    return {"metrics": metrics, "mismatched": mismatched, "documents": len(theirs["samples"]),
            "differing_documents": differing, "ours_documents": len(mine)}


def bench_size(size: str, args) -> tuple[list[str], bool]:
    runs: dict[str, list[dict]] = {"ours": [], "lm_eval": []}
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        config, model_dir, tasks_dir = build(work, size, args.docs, args.batch_size, args.seq_length)
        info = json.loads((model_dir / "export.json").read_text())
        model, params = info["model"], info["num_parameters"]
        print(f"built {model} ({params:,} parameters) and its task in {time.perf_counter() - t0:.1f} s", flush=True)
        for i in range(args.repeat):
            for name in ("ours", "lm_eval"):  # alternate, so load on the machine hits both alike
                out = work / f"{name}{i}"
                out.mkdir()
                load = os.getloadavg()[0]
                res = (run_ours(config, model, model_dir, tasks_dir, out) if name == "ours"
                       else run_lm_eval(model_dir, tasks_dir, args.batch_size, out))
                res["load"] = load
                runs[name].append(res)
                print(f"{name:8s} run {i + 1}: {res['wall']:6.2f} s wall (load average before {load:.1f})", flush=True)
        check = compare(runs["ours"][0], runs["lm_eval"][0])

    docs = check["documents"]
    best = {name: min(r["wall"] for r in rs) for name, rs in runs.items()}
    meta = [r["record"]["metadata"] for r in runs["ours"]]
    eval_only = max(m["documents_per_second"] for m in meta)
    load_s = min(m["seconds_load"] for m in meta)
    eval_s = min(m["seconds_eval"] for m in meta)
    theirs_eval = [float(r["data"].get("total_evaluation_time_seconds", "nan")) for r in runs["lm_eval"]]
    identical = not check["mismatched"] and check["differing_documents"] == 0 and check["ours_documents"] == docs
    lines = [
        f"## `{model}` ({params:,} parameters)",
        "",
        "| command | run | wall (s) | documents/s (end to end) | load average before |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, rs in runs.items():
        label = "pythia-repro evaluate" if name == "ours" else "lm_eval --model hf"
        for i, r in enumerate(rs, 1):
            lines.append(f"| `{label}` | {i} | {r['wall']:.2f} | {docs / r['wall']:.2f} | {r['load']:.1f} |")
    lines += [
        "",
        f"Best end to end: ours {best['ours']:.2f} s ({docs / best['ours']:.2f} docs/s), lm_eval CLI"
        f" {best['lm_eval']:.2f} s ({docs / best['lm_eval']:.2f} docs/s): ratio {best['lm_eval'] / best['ours']:.2f}x.",
        f"Inside our job: HFLM set-up (its imports + model load) {load_s:.2f} s, evaluation {eval_s:.2f} s"
        f" ({eval_only:.1f} docs/s);"
        f" the CLI's own total_evaluation_time_seconds: {min(theirs_eval):.2f} s (its task indexing, model load"
        " and evaluation).",
        "",
        "Same answers: " + ("**identical**" if identical else "**DIFFERENT**")
        + f" — aggregate metrics {', '.join(check['metrics'])} "
        + ("all equal" if not check["mismatched"] else f"differ in {check['mismatched']}")
        + f"; per-document (loglikelihood, is_greedy) equal for {docs - check['differing_documents']}/{docs}"
        f" documents (acc = {runs['ours'][0]['results']['acc,none']},"
        f" perplexity = {runs['ours'][0]['results']['perplexity,none']:.6g}: a barely trained model, the numbers"
        " only have to agree).",
        "",
    ]
    return lines, identical


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", nargs="+", default=["micro", "70m"], help="sizes of the built-in table")
    ap.add_argument("--docs", type=int, default=200, help="held-out documents (the default config has 200)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq-length", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "eval.md"))
    args = ap.parse_args()

    lines = [
        "# Evaluation throughput: `pythia-repro evaluate` vs the `lm_eval` CLI",
        "",
        f"`python bench/bench_eval.py --size {' '.join(args.size)} --docs {args.docs} --batch-size {args.batch_size}"
        f" --repeat {args.repeat}` on {platform.node() or 'this machine'} ({os.cpu_count()} cores, CPU only,"
        f" Python {platform.python_version()}), {time.strftime('%Y-%m-%d')}.",
        "",
        "Each model is a real DeepSpeed ZeRO-1 checkpoint exported by `pythia-repro export`; the task is",
        f"`lambada_heldout` (0-shot) on {args.docs} synthetic held-out documents, sequence length {args.seq_length};",
        f"same device (cpu) and batch size ({args.batch_size}) for both commands:",
        "",
        "    pythia-repro evaluate --config S --model M --step 8 --input DIR --tasks-dir T --output R --samples X",
        "    lm_eval --model hf --model_args pretrained=DIR --tasks lambada_heldout --include_path T --device cpu \\",
        f"            --batch_size {args.batch_size} --output_path O --log_samples",
        "",
        "Wall time is process start to exit. Both run the same `simple_evaluate` with the same HFLM on the",
        "same requests; the end-to-end difference is start-up: the CLI indexes all of the harness's task",
        "folders (~14,000 YAML entries) every time, while our job reads the index that `eval-tasks` wrote",
        "once per suite and indexes only the folders its tasks live in. Imports of torch/transformers/lm_eval",
        "are paid by both. The machine is shared with other work; the load average before each run is shown.",
        "",
    ]
    ok = True
    for size in args.size:
        section, identical = bench_size(size, args)
        lines += section
        ok &= identical
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
