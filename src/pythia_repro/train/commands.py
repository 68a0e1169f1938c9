"""Verbs of the training stage: `train` (one rank's worker), `launch` (N ranks), `plot-loss`,
`verify-checkpoints`."""

from __future__ import annotations

import argparse
import sys

from pythia_repro.config import load_suite
from pythia_repro.errors import PythiaReproError


def _run_options(args: argparse.Namespace):
    from pythia_repro.train.trainer import RunOptions

    return RunOptions(threads=args.threads, peak_flops=args.peak_flops, attention=args.attention,
                      deterministic=args.deterministic, tensorboard=not args.no_tensorboard,
                      deadline=args.deadline)


def _train(args: argparse.Namespace) -> int:
    from pythia_repro.train.trainer import train_segment

    suite = load_suite(args.config)
    until = suite.train_iters if args.until_step is None else args.until_step
    code = train_segment(suite, args.model, until, _run_options(args))
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    return code


def _worker_args(args: argparse.Namespace) -> list[str]:
    out = ["train", "--config", str(args.config), "--model", args.model]
    if args.until_step is not None:
        out += ["--until-step", str(args.until_step)]
    for flag, value in (("--threads", args.threads), ("--peak-flops", args.peak_flops),
                        ("--attention", args.attention), ("--deadline", args.deadline)):
        if value is not None:
            out += [flag, str(value)]
    if args.deterministic is not None:
        out.append("--deterministic" if args.deterministic else "--no-deterministic")
    if args.no_tensorboard:
        out.append("--no-tensorboard")
    return out


def _launch(args: argparse.Namespace) -> int:
    from pythia_repro.train.checkpoint import complete_checkpoints, stopped_with_checkpoint
    from pythia_repro.train.distributed import choose_launcher, launch_command, run_launcher, stop_deadline
    from pythia_repro.train.trainer import PREEMPTED

    suite = load_suite(args.config)
    suite.model(args.model)  # fail here, not in N workers, on a wrong name
    args.deadline = stop_deadline(args.stop_before_limit, log=lambda m: print(m, file=sys.stderr, flush=True))
    ranks = args.ranks or suite.training.ranks
    launcher = choose_launcher(ranks) if args.launcher == "auto" else args.launcher
    if launcher == "none":
        if ranks != 1:
            raise PythiaReproError(f"--launcher none runs one rank in this process, but {ranks} ranks were asked for")
        return _train(args)
    command = launch_command(launcher, ranks, _worker_args(args), cpus_per_task=args.threads)
    print("[launch] " + " ".join(command), file=sys.stderr, flush=True)
    save_dir = suite.layout.checkpoints_dir(args.model)
    before = complete_checkpoints(save_dir)
    rc = run_launcher(command)
    if rc not in (0, PREEMPTED) and stopped_with_checkpoint(before, complete_checkpoints(save_dir)):
        # The ranks exit one by one after their stop checkpoint; srun's --kill-on-bad-exit may
        # terminate the slower ones on the first one's PREEMPTED, which hides the clean stop.
        rc = PREEMPTED
    return rc


def _plot(args: argparse.Namespace) -> None:
    from pythia_repro.train.plot import plot_loss

    print(plot_loss(load_suite(args.config), args.output))


def _verify(args: argparse.Namespace) -> int:
    """Every checkpoint's state, one line each; 1 if any is corrupt. Read-only: nothing is moved."""
    from pythia_repro.train.checkpoint import checkpoint_states

    suite = load_suite(args.config)
    names = [suite.model(args.model).name] if args.model else [m.name for m in suite.models]
    counts: dict[str, int] = {}
    for name in names:
        for row in checkpoint_states(suite.layout.checkpoints_dir(name)):
            counts[row["state"]] = counts.get(row["state"], 0) + 1
            line = f"{name} step{row['step']}: {row['state']}"
            if row["state"] in ("corrupt", "incomplete"):
                line += ": " + row["reason"].split(": ", 1)[-1].removeprefix("corrupt checkpoint: ")
            elif row["state"] == "quarantined":
                line += f" ({row['path']})"
            elif not row["checksums"]:
                line += " (sizes and archives checked; manifest predates checksums)"
            print(line)
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no checkpoints"
    print(f"[verify-checkpoints] {summary}", file=sys.stderr)
    return 1 if counts.get("corrupt") else 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="suite config (YAML)")
    p.add_argument("--model", required=True, help="model name, e.g. pythia-70m-deduped")
    p.add_argument("--until-step", type=int, help="train up to this step (a segment end); default: the end")
    p.add_argument("--threads", type=int, help="CPU threads per rank (torch.set_num_threads)")
    p.add_argument("--peak-flops", type=float, help="peak FLOP/s of one device for MFU (default: from GPU name)")
    p.add_argument("--attention", choices=["sdpa", "flash_attention_2", "eager"],
                   help="attention kernel (default: flash_attention_2 on CUDA when installed, else sdpa)")
    p.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=None,
                   help="deterministic algorithms (default: on for CPU, off for GPU)")
    p.add_argument("--no-tensorboard", action="store_true", help="skip TensorBoard event files")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train one model to a step as one rank (resumes from its last complete checkpoint)",
        description="One rank of a training segment. Rank and rendezvous come from torchrun/DeepSpeed "
                    "(RANK, WORLD_SIZE, ...) or srun (SLURM_PROCID, ...); without them, a single rank.")
    _common(p)
    p.add_argument("--local_rank", "--local-rank", type=int, help=argparse.SUPPRESS)  # DeepSpeed launcher
    p.add_argument("--deadline", type=float,
                   help="epoch seconds: checkpoint and exit 75 once past it (launch sets it from SLURM)")
    p.set_defaults(handler=_train)

    p = subparsers.add_parser(
        "launch", help="run a training segment on N ranks: srun in SLURM, torchrun locally, or in-process",
        description="Start `train` on training.ranks ranks: srun inside a SLURM allocation, torchrun "
                    "on one machine, or in this process for one rank.")
    _common(p)
    p.add_argument("--ranks", type=int, help="data-parallel ranks (default: training.ranks)")
    p.add_argument("--launcher", choices=["auto", "none", "torchrun", "slurm"], default="auto")
    p.add_argument("--stop-before-limit", type=float, default=600, metavar="SECONDS",
                   help="inside a SLURM job: checkpoint and exit 75 this long before its time limit "
                        "(default 600; leave time for one checkpoint of the model)")
    p.set_defaults(handler=_launch)

    p = subparsers.add_parser(
        "verify-checkpoints", help="check every checkpoint's files against its manifest (sizes, checksums)",
        description="List each checkpoint as ok, corrupt (file: reason), incomplete or quarantined "
                    "(moved aside by a resume); exit 1 if any is corrupt. Moves nothing.")
    p.add_argument("--config", required=True, help="suite config (YAML)")
    p.add_argument("--model", help="one model (default: every model of the suite)")
    p.set_defaults(handler=_verify)

    p = subparsers.add_parser("plot-loss", help="training loss and learning rate of every model of a suite")
    p.add_argument("--config", required=True, help="suite config (YAML)")
    p.add_argument("--output", required=True, help="figure path, e.g. results/mini/figures/loss.png")
    p.set_defaults(handler=_plot)
