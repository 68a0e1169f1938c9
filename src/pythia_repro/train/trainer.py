"""Train one model of a suite up to a step: one segment of its run, resumable at any point.

    train_segment(suite, "pythia-70m", until_step=5000)

resumes from the model's latest complete checkpoint (an intervention's first segment starts from
its base model's checkpoint at the branch step), trains step by step on GPT-NeoX's data order,
checkpoints on the suite's schedule and at `until_step`, and finally writes the segment marker
`{model_dir}/segments/end{until_step}.json`. SIGTERM/SIGUSR1, or reaching `RunOptions.deadline`
(`launch` sets it before a SLURM job's time limit), make it checkpoint at the current step and
exit with PREEMPTED, so the rerun continues.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import resource
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from pythia_repro.atomic import write_json
from pythia_repro.config import ModelSpec, Suite
from pythia_repro.train import checkpoint
from pythia_repro.train.batches import RankBatches, accumulation_steps
from pythia_repro.train.distributed import DistEnv, detect, init_process_group
from pythia_repro.train.metrics import MetricsLog, ProgressLine, peak_flops
from pythia_repro.train.optim import build_optimizer
from pythia_repro.train.schedule import AnnealingLR, schedule_for
from pythia_repro.train.substitution import Substitution, substitution_map

PREEMPTED = 75  # EX_TEMPFAIL: stopped early (signal, time limit) with a checkpoint; rerun to continue
# Test hook: "STEP:SIGNAL" makes the trainer send itself SIGNAL right after finishing STEP.
DEBUG_SIGNAL_ENV = "PYTHIA_REPRO_DEBUG_SIGNAL"


@dataclass
class RunOptions:
    threads: int | None = None  # CPU threads per rank (torch.set_num_threads)
    peak_flops: float | None = None  # per device, for MFU; looked up from the GPU name when None
    attention: str | None = None  # sdpa | flash_attention_2 | eager; auto when None
    deterministic: bool | None = None  # torch deterministic algorithms; on by default on CPU
    tensorboard: bool = True
    deadline: float | None = None  # epoch seconds: checkpoint and stop (PREEMPTED) once past it


def segment_marker(suite: Suite, model: str, end: int) -> Path:
    return suite.model_dir(model) / "segments" / f"end{end}.json"


def vocab_size(suite: Suite, shape: dict) -> int:
    from tokenizers import Tokenizer

    from pythia_repro.models.sizes import padded_vocab_size

    tokenizer = Tokenizer.from_file(str(suite.tokenizer_path))
    return padded_vocab_size(tokenizer.get_vocab_size(with_added_tokens=True), shape["model_parallel"])


def attention_implementation(device: torch.device, precision: str, requested: str | None) -> str:
    if requested:
        return requested
    if device.type == "cuda" and precision != "fp32" and importlib.util.find_spec("flash_attn"):
        return "flash_attention_2"
    return "sdpa"


def deepspeed_config(training: dict, world_size: int, num_params: int, device: torch.device) -> dict:
    """DeepSpeed's JSON config: batch geometry, clipping, ZeRO and precision from the suite."""
    global_batch = training["global_batch_size"]
    micro = training.get("micro_batch_size") or global_batch // world_size
    bucket = int(min(5e8, max(num_params, 1)))  # GPT-NeoX's 5e8, capped: no 2 GB buffer for a tiny model
    config = {
        "train_batch_size": global_batch,
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": accumulation_steps(global_batch, micro, world_size),
        "gradient_clipping": training["grad_clip"],
        "zero_optimization": {
            "stage": training["zero_stage"],
            "allgather_partitions": True,
            "allgather_bucket_size": bucket,
            "reduce_scatter": True,
            "reduce_bucket_size": bucket,
            "overlap_comm": device.type == "cuda",
            "contiguous_gradients": True,
        },
        "zero_allow_untested_optimizer": True,
        "bf16": {"enabled": training["precision"] == "bf16"},
        # Pythia's dynamic loss scaling (models/*.yml).
        "fp16": {"enabled": training["precision"] == "fp16", "loss_scale": 0, "loss_scale_window": 1000,
                 "initial_scale_power": 12, "hysteresis": 2, "min_loss_scale": 1},
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }
    return config


class _StopFlag:
    """Remembers a SIGTERM/SIGUSR1, or notices the deadline (a job's time limit less a margin),
    so the loop can checkpoint at the end of the current step."""

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline
        self.reason: str | None = None
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, self._handle)

    def _handle(self, signum, _frame) -> None:
        self._stop(f"signal {signal.Signals(signum).name}")

    def _stop(self, reason: str) -> None:
        self.reason = reason
        print(f"[train] {reason}: checkpointing after this step", file=sys.stderr, flush=True)

    def agreed(self, dist_env: DistEnv, device: torch.device) -> bool:
        """Whether any rank was signalled or saw the deadline (ranks may do so a step apart)."""
        if self.reason is None and self.deadline is not None and time.time() >= self.deadline:
            self._stop("time limit near")
        if dist_env.world_size == 1:
            return self.reason is not None
        import torch.distributed as dist

        flag = torch.tensor([1.0 if self.reason is not None else 0.0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


def _debug_signal() -> tuple[int, int] | None:
    spec = os.environ.get(DEBUG_SIGNAL_ENV)
    if not spec:
        return None
    step, name = spec.split(":")
    return int(step), int(getattr(signal, f"SIG{name.upper()}"))


def setup_runtime(options: RunOptions) -> tuple[DistEnv, torch.device]:
    """Device, threads, determinism and torch.distributed (+ DeepSpeed's view of it) for this rank."""
    dist_env = detect()
    if torch.cuda.is_available():
        torch.cuda.set_device(dist_env.local_rank)
        device = torch.device("cuda", dist_env.local_rank)
    else:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
        device = torch.device("cpu")
    if options.threads:
        torch.set_num_threads(options.threads)
    deterministic = options.deterministic if options.deterministic is not None else device.type == "cpu"
    if deterministic:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        # Deterministic mode would also fill every torch.empty with NaNs, including DeepSpeed's
        # gradient buckets: seconds per step for nothing, as they are written before being read.
        torch.utils.deterministic.fill_uninitialized_memory = False
    import deepspeed
    from deepspeed.utils import logger as ds_logger

    ds_logger.setLevel(logging.WARNING)
    backend = "nccl" if device.type == "cuda" else "gloo"
    init_process_group(dist_env, backend)
    deepspeed.init_distributed(dist_backend=backend)
    return dist_env, device


@dataclass
class Engine:
    engine: object  # deepspeed.DeepSpeedEngine; engine.module is the transformers model
    ds_config: dict
    lr_args: dict
    flops_per_token: float
    attention: str


def build_engine(spec: ModelSpec, training: dict, seq_length: int, vocab: int, device: torch.device,
                 world_size: int, attention: str | None = None) -> Engine:
    """The freshly initialised model of `spec` under DeepSpeed, with GPT-NeoX's AdamW and schedule."""
    import deepspeed

    from pythia_repro.models.build import build_model, flops_per_token

    torch.manual_seed(spec.seed)
    attention = attention_implementation(device, training["precision"], attention)
    model = build_model(spec.arch, spec.shape, vocab, seq_length, spec.seed, attention)
    model.config.use_cache = False
    if training.get("activation_checkpointing"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    flops = flops_per_token(model, spec.shape, seq_length)  # before ZeRO-3 could partition the weights
    lr_args = schedule_for(training, spec.shape)
    ds_config = deepspeed_config(training, world_size, sum(p.numel() for p in model.parameters()), device)
    engine, _, _, _ = deepspeed.initialize(
        model=model,
        optimizer=build_optimizer(model, training, device),
        lr_scheduler=lambda opt: AnnealingLR(opt, **lr_args),
        config=ds_config,
        dist_init_required=False,
    )
    engine.train()
    return Engine(engine, ds_config, lr_args, flops, attention)


def train_step(engine, micro_batches: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """One optimizer step: forward/backward of each micro-batch, DeepSpeed's update at the last.

    Each micro-batch's loss is its mean over tokens; DeepSpeed divides by the accumulation steps
    and averages over ranks, so the gradient is that of the global batch's mean token loss.
    Returns this rank's mean micro-batch loss (a tensor, not synchronised).
    """
    losses = []
    for inputs, labels in micro_batches:
        logits = engine(input_ids=inputs).logits
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1))
        engine.backward(loss)
        engine.step()
        losses.append(loss.detach())
    return torch.stack(losses).mean()


def starting_point(suite: Suite, spec: ModelSpec) -> tuple[Path, int] | None:
    """(save_dir, step) to load: the model's latest complete checkpoint, else (interventions) the
    base model's checkpoint at the branch step; None for a fresh start at step 0."""
    save_dir = suite.model_dir(spec.name) / "checkpoints"
    resume = checkpoint.latest_complete(save_dir)
    if resume is not None:
        return save_dir, resume
    if not spec.is_intervention:
        return None
    base_dir = suite.model_dir(spec.base) / "checkpoints"
    if checkpoint.read_manifest(base_dir / checkpoint.tag(spec.branch_step)) is None:
        raise FileNotFoundError(f"{base_dir / checkpoint.tag(spec.branch_step)}: {spec.name} branches from this "
                                f"checkpoint of {spec.base}, which is missing or incomplete")
    return base_dir, spec.branch_step


def _log(model: str, message: str) -> None:
    print(f"[train {model}] {message}", file=sys.stderr, flush=True)


def train_segment(suite: Suite, model_name: str, until_step: int, options: RunOptions | None = None) -> int:
    """Train `model_name` to `until_step`; 0 when the segment is done, PREEMPTED when stopped early."""
    options = options or RunOptions()
    spec = suite.model(model_name)
    training = suite.training
    if not 0 <= until_step <= suite.train_iters:
        raise ValueError(f"--until-step {until_step} is outside 0..{suite.train_iters} (training.train_iters)")
    if spec.branch_step is not None and until_step <= spec.branch_step:
        raise ValueError(f"{model_name} branches from {spec.base} at step {spec.branch_step}; "
                         f"--until-step must be later")
    model_dir = suite.model_dir(model_name)
    save_dir = model_dir / "checkpoints"
    schedule = set(suite.model_checkpoint_steps(model_name))

    dist_env, device = setup_runtime(options)
    import torch.distributed as dist

    rank, world = dist_env.rank, dist_env.world_size
    if rank == 0:
        removed = checkpoint.remove_incomplete(save_dir)
        if removed:
            _log(model_name, f"removed incomplete checkpoints {removed}")
    dist.barrier()
    source = starting_point(suite, spec)
    start = source[1] if source else 0
    if start >= until_step:
        if rank == 0:
            _write_marker(suite, model_name, until_step, start, None)
        dist.barrier()
        return 0

    vocab = vocab_size(suite, spec.shape)
    built = build_engine(spec, training, suite.seq_length, vocab, device, world, options.attention)
    engine = built.engine
    if source is not None:
        client = checkpoint.load(engine, source[0], source[1], rank)
        if client.get("step", source[1]) != source[1]:
            raise ValueError(f"{source[0]}/{checkpoint.tag(source[1])}: client state says step {client.get('step')}")
        if rank == 0:
            how = "resumed" if source[0] == save_dir else f"branched from {spec.base}"
            _log(model_name, f"{how} at step {start}")

    from pythia_repro.data.batch import TrainingOrder

    order = TrainingOrder(suite.data_prefix(spec.data), suite.train_iters, suite.global_batch_size,
                          suite.seq_length, spec.seed, num_samples=suite.num_samples)
    substitution = None
    if spec.substitution:
        table = substitution_map(spec.substitution, suite.tokenizer_path)
        substitution = Substitution(table, vocab)
        if rank == 0:
            _log(model_name, f"substitution {spec.substitution}: {len(table)} token pairs")
    batches = RankBatches(order, suite.global_batch_size, built.ds_config["train_micro_batch_size_per_gpu"], rank,
                          world, device, substitution)

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    peak = peak_flops(device_name, options.peak_flops)
    manifest_base = {
        "model": model_name, "suite": suite.name, "arch": spec.arch, "size": spec.size, "shape": spec.shape,
        "vocab_size": vocab, "seq_length": suite.seq_length,
        "hf_config": json.loads(engine.module.config.to_json_string()),
        "tokenizer": str(suite.tokenizer_path), "zero_stage": training["zero_stage"],
        "precision": training["precision"], "world_size": world, "global_batch_size": suite.global_batch_size,
        "data": spec.data, "data_prefix": str(suite.data_prefix(spec.data)), "seed": spec.seed,
        "base": spec.base, "branch_step": spec.branch_step, "substitution": spec.substitution,
        "train_iters": suite.train_iters, "lr_schedule": built.lr_args, "attention": built.attention,
    }

    def save(step: int, last_loss: float | None, reason: str) -> None:
        manifest = {**manifest_base, "step": step, "samples_consumed": step * suite.global_batch_size,
                    "scheduled": step in schedule, "reason": reason, "loss": last_loss, "saved_at": time.time()}
        client_state = {"step": step, "samples_consumed": step * suite.global_batch_size, "model": model_name}
        checkpoint.save(engine, save_dir, step, manifest, client_state, rank)
        if rank == 0:
            checkpoint.remove_stale_unscheduled(save_dir, step)
            _log(model_name, f"checkpoint step{step} ({reason})")

    metrics = MetricsLog(model_dir, start, options.tensorboard) if rank == 0 else None
    progress = ProgressLine(model_name, start, until_step, training["log_every"]) if rank == 0 else None
    if source is None and 0 in schedule:
        save(0, None, "schedule")
    stop, debug = _StopFlag(options.deadline), _debug_signal()
    tokens_per_step = suite.global_batch_size * suite.seq_length
    step, loss_value = start, None
    try:
        while step < until_step:
            t0 = time.perf_counter()
            lr = engine.get_lr()[0]  # the rate this update uses: DeepSpeed steps the schedule after it
            loss_sum = train_step(engine, batches.micro_batches(step))
            if world > 1:
                dist.all_reduce(loss_sum)
            loss_value = loss_sum.item() / world
            step += 1
            elapsed = time.perf_counter() - t0
            grad_norm = engine.get_global_grad_norm()
            tokens_per_s = tokens_per_step / elapsed
            record = {
                "step": step, "loss": loss_value, "lr": lr,
                "grad_norm": float(grad_norm) if grad_norm is not None else float("nan"),
                "tokens_per_s": tokens_per_s,
                "mfu": tokens_per_s * built.flops_per_token / (world * peak) if peak else None,
                "samples": step * suite.global_batch_size, "step_time_s": elapsed,
            }
            if training["precision"] == "fp16":
                record["loss_scale"] = float(engine.optimizer.cur_scale)
            if metrics is not None:
                metrics.write(record)
                progress.update(record)
            if debug and debug[0] == step:
                os.kill(os.getpid(), debug[1])
            saved = step in schedule or step == until_step
            if saved:
                save(step, loss_value, "schedule" if step in schedule else "segment end")
            if step < until_step and stop.agreed(dist_env, device):
                reason = stop.reason or "stop agreed with the other ranks"
                if not saved:
                    save(step, loss_value, reason)
                if rank == 0:
                    _log(model_name, f"stopped at step {step} ({reason}); rerun to continue")
                return PREEMPTED
    finally:
        if metrics is not None:
            metrics.close()
    if rank == 0:
        _write_marker(suite, model_name, until_step, step, loss_value)
    dist.barrier()
    return 0


def _write_marker(suite: Suite, model: str, until: int, step: int, loss: float | None) -> None:
    """The segment's Snakemake output, written once its last checkpoint is complete."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    write_json(segment_marker(suite, model, until), {
        "model": model, "until_step": until, "last_checkpoint_step": step, "loss": loss,
        "checkpoints": str(suite.model_dir(model) / "checkpoints"), "complete": True, "finished_at": time.time(),
        "rank0_cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
    })
