"""Train one model of a suite up to a step: one segment of its run, resumable at any point.

    train_segment(suite, "pythia-70m", until_step=5000)

resumes from the model's latest complete checkpoint (an intervention's first segment starts from
its base model's checkpoint at the branch step), trains step by step on GPT-NeoX's data order,
checkpoints on the suite's schedule and at `until_step`, and finally writes the segment marker
(`suite.layout.segment_marker`). SIGTERM/SIGUSR1, or reaching `RunOptions.deadline` (`launch` sets
it before a SLURM job's time limit), make it checkpoint at the current step and exit with
PREEMPTED, so the rerun continues. The loop itself is short: `prepare_run` builds everything a
segment needs, `checkpoint_manifest` says what a checkpoint records, `train_segment` steps.
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from pythia_repro.atomic import write_json
from pythia_repro.config import ModelSpec, Suite, TrainingSection
from pythia_repro.data.batch import TrainingOrder
from pythia_repro.errors import PythiaReproError
from pythia_repro.models.sizes import Shape
from pythia_repro.train import checkpoint
from pythia_repro.train.batches import RankBatches, accumulation_steps
from pythia_repro.train.distributed import DistEnv, detect, init_process_group
from pythia_repro.train.metrics import MetricsLog, ProgressLine, peak_flops
from pythia_repro.train.optim import build_optimizer
from pythia_repro.train.schedule import AnnealingLR, schedule_for
from pythia_repro.train.substitution import Substitution, substitution_map

PREEMPTED = 75  # EX_TEMPFAIL: stopped early (signal, time limit) with a checkpoint; rerun to continue


@dataclass
class RunOptions:
    threads: int | None = None  # CPU threads per rank (torch.set_num_threads)
    peak_flops: float | None = None  # per device, for MFU; looked up from the GPU name when None
    attention: str | None = None  # sdpa | flash_attention_2 | eager; auto when None
    deterministic: bool | None = None  # torch deterministic algorithms; on by default on CPU
    tensorboard: bool = True
    deadline: float | None = None  # epoch seconds: checkpoint and stop (PREEMPTED) once past it
    on_step: Callable[[int], None] | None = None  # called after each step (tests inject signals here)


def vocab_size(suite: Suite, shape: Shape) -> int:
    """The model's padded vocabulary, from the suite's actual tokenizer file."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(suite.layout.tokenizer))
    return shape.padded_vocab(tokenizer.get_vocab_size(with_added_tokens=True))


def attention_implementation(device: torch.device, precision: str, requested: str | None) -> str:
    if requested:
        return requested
    if device.type == "cuda" and precision != "fp32" and importlib.util.find_spec("flash_attn"):
        return "flash_attention_2"
    return "sdpa"


def deepspeed_config(training: TrainingSection, world_size: int, num_params: int, device: torch.device) -> dict:
    """DeepSpeed's JSON config: batch geometry, clipping, ZeRO and precision from the suite.

    The batch is the one after any ramp; `Run.micro_batches` sets each step's own (the micro-batch
    is the same for all: the smallest batch over the ranks unless given)."""
    global_batch = training.global_batch_size
    micro = training.micro_batch_size or training.batch_schedule.smallest // world_size
    bucket = int(min(5e8, max(num_params, 1)))  # GPT-NeoX's 5e8, capped: no 2 GB buffer for a tiny model
    return {
        "train_batch_size": global_batch,
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": accumulation_steps(global_batch, micro, world_size),
        "gradient_clipping": training.grad_clip,
        "zero_optimization": {
            "stage": training.zero_stage,
            "allgather_partitions": True,
            "allgather_bucket_size": bucket,
            "reduce_scatter": True,
            "reduce_bucket_size": bucket,
            "overlap_comm": device.type == "cuda",
            "contiguous_gradients": True,
        },
        "zero_allow_untested_optimizer": True,
        "bf16": {"enabled": training.precision == "bf16"},
        # Pythia's dynamic loss scaling (models/*.yml).
        "fp16": {"enabled": training.precision == "fp16", "loss_scale": 0, "loss_scale_window": 1000,
                 "initial_scale_power": 12, "hysteresis": 2, "min_loss_scale": 1},
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }


STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


class _StopFlag:
    """Remembers a SIGTERM/SIGUSR1/SIGINT, or notices the deadline (a job's time limit less a
    margin), so the loop can checkpoint at the end of the current step. Ctrl-C is a stop like
    SIGTERM; after the first one SIGINT's default action is back, so a second Ctrl-C aborts at
    once (the last complete checkpoint stays the resume point)."""

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline
        self.reason: str | None = None
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, signum, _frame) -> None:
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            print("[train] Ctrl-C: stopping with a checkpoint; press Ctrl-C again to abort without one",
                  file=sys.stderr, flush=True)
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


def build_engine(spec: ModelSpec, training: TrainingSection, seq_length: int, vocab: int, device: torch.device,
                 world_size: int, attention: str | None = None) -> Engine:
    """The freshly initialised model of `spec` under DeepSpeed, with GPT-NeoX's AdamW and schedule."""
    import deepspeed

    from pythia_repro.models.build import build_model, flops_per_token

    torch.manual_seed(spec.seed)
    attention = attention_implementation(device, training.precision, attention)
    model = build_model(spec.arch, spec.shape, vocab, seq_length, spec.seed, attention)
    model.config.use_cache = False
    if training.activation_checkpointing:
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


def lm_loss(logits: torch.Tensor, labels: torch.Tensor, z_loss: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(objective to backpropagate, mean token cross-entropy) of `logits` (..., vocab) for `labels`.

    With `z_loss` > 0 the objective adds PaLM's auxiliary loss z_loss x mean(log² Z), Z the
    softmax normaliser (logsumexp of a token's logits): it pulls log Z towards 0, which PaLM
    (Section 5) found keeps training stable. The cross-entropy alone is what gets logged.
    """
    flat = logits.float().reshape(-1, logits.size(-1))
    cross_entropy = torch.nn.functional.cross_entropy(flat, labels.reshape(-1))
    if not z_loss:
        return cross_entropy, cross_entropy  # no logsumexp pass over the vocabulary when it is off
    log_z = torch.logsumexp(flat, dim=-1)
    return cross_entropy + z_loss * log_z.square().mean(), cross_entropy


def train_step(engine, micro_batches: list[tuple[torch.Tensor, torch.Tensor]], z_loss: float = 0.0) -> torch.Tensor:
    """One optimizer step: forward/backward of each micro-batch, DeepSpeed's update at the last.

    Each micro-batch's loss is its mean over tokens (plus the z-loss, see `lm_loss`); DeepSpeed
    divides by the accumulation steps (the engine's, which must be len(micro_batches)) and
    averages over ranks, so the gradient is that of the global batch's mean token loss. Returns
    this rank's mean micro-batch cross-entropy (a tensor, not synchronised).
    """
    losses = []
    for k, (inputs, labels) in enumerate(micro_batches):
        # The update comes at this step's last micro-batch. DeepSpeed would otherwise place it by
        # its count of micro-batches since the engine was built, which a batch ramp or a resume
        # into a later ramp phase puts out of step with the accumulation.
        engine.set_gradient_accumulation_boundary(k == len(micro_batches) - 1)
        objective, cross_entropy = lm_loss(engine(input_ids=inputs).logits, labels, z_loss)
        engine.backward(objective)
        engine.step()
        losses.append(cross_entropy.detach())
    return torch.stack(losses).mean()


def verify_checkpoints(suite: Suite, spec: ModelSpec, log: Callable[[str], None]) -> None:
    """Rank 0, before `starting_point`: quarantine the model's newest complete checkpoints that
    fail verification (logging file and reason) until one verifies; for an intervention without
    checkpoints of its own, verify the base checkpoint it branches from. CheckpointError if a
    run that had checkpoints has none left that verifies, or the branch checkpoint is corrupt."""
    save_dir = suite.layout.checkpoints_dir(spec.name)
    if checkpoint.latest_verified(save_dir, log=log) is not None:
        return
    moved = sorted(p.name for p in save_dir.glob(f"step*{checkpoint.CORRUPT_MARK}*")) if save_dir.is_dir() else []
    if moved:
        raise checkpoint.CheckpointError(
            f"{save_dir}: no checkpoint of {spec.name} verifies (moved aside: {', '.join(moved)}); "
            "restore a good copy, or delete them to train from step 0")
    if spec.is_intervention:
        branch = suite.layout.checkpoint(spec.base, spec.branch_step)
        if checkpoint.is_complete(branch):
            checkpoint.verify(branch)


def starting_point(suite: Suite, spec: ModelSpec) -> tuple[Path, int] | None:
    """(save_dir, step) to load: the model's latest complete checkpoint, else (interventions) the
    base model's checkpoint at the branch step; None for a fresh start at step 0. Corrupt
    checkpoints are out of the way already (`verify_checkpoints`, `step{N}.corrupt-*`)."""
    save_dir = suite.layout.checkpoints_dir(spec.name)
    resume = checkpoint.latest_complete(save_dir)
    if resume is not None:
        return save_dir, resume
    if not spec.is_intervention:
        return None
    branch = suite.layout.checkpoint(spec.base, spec.branch_step)
    if not checkpoint.is_complete(branch):
        raise checkpoint.CheckpointError(f"{branch}: {spec.name} branches from this checkpoint of {spec.base}, "
                                         "which is missing or incomplete")
    return suite.layout.checkpoints_dir(spec.base), spec.branch_step


def _log(model: str, message: str) -> None:
    print(f"[train {model}] {message}", file=sys.stderr, flush=True)


def checkpoint_manifest(suite: Suite, spec: ModelSpec, built: Engine, vocab: int, world_size: int) -> dict:
    """What every checkpoint of this run records beside its files (export and resume read it);
    `save` adds the step, the loss and why it was taken."""
    return {
        "model": spec.name, "suite": suite.name, "arch": spec.arch, "size": spec.size,
        "shape": spec.shape.as_dict(), "vocab_size": vocab, "seq_length": suite.seq_length,
        "hf_config": json.loads(built.engine.module.config.to_json_string()),
        "tokenizer": str(suite.layout.tokenizer), "zero_stage": suite.training.zero_stage,
        "precision": suite.training.precision, "world_size": world_size,
        "global_batch_size": suite.global_batch_size, "batch_ramp": list(suite.training.batch_ramp), "data": spec.data,
        "data_prefix": str(suite.layout.data_prefix(spec.data)), "seed": spec.seed, "base": spec.base,
        "branch_step": spec.branch_step, "substitution": spec.substitution, "train_iters": suite.train_iters,
        "lr_schedule": built.lr_args, "attention": built.attention,
    }


@dataclass
class Run:
    """Everything one segment of a model's training needs, built once by `prepare_run`."""

    suite: Suite
    spec: ModelSpec
    dist_env: DistEnv
    device: torch.device
    built: Engine
    batches: RankBatches
    start: int  # the step training continues from
    fresh: bool  # no checkpoint loaded: step 0 is saved first when scheduled
    schedule: set[int]
    manifest: dict
    peak_flops: float | None

    @property
    def engine(self):
        return self.built.engine

    def micro_batches(self, step: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's share of `step`'s batch, with the engine's accumulation set to match: at a
        ramp boundary, and at the start of every run (it may resume inside any ramp phase)."""
        size = self.batches.schedule.batch_size(step)
        if self.engine.train_batch_size() != size:
            self.engine.set_train_batch_size(size)
        return self.batches.micro_batches(step)

    def save(self, step: int, loss: float | None, reason: str) -> None:
        samples = self.suite.batch_schedule.samples_before(step)
        save_dir = self.suite.layout.checkpoints_dir(self.spec.name)
        manifest = {**self.manifest, "step": step, "samples_consumed": samples, "scheduled": step in self.schedule,
                    "reason": reason, "loss": loss, "saved_at": time.time()}
        client_state = {"step": step, "samples_consumed": samples, "model": self.spec.name}
        checkpoint.save(self.engine, save_dir, step, manifest, client_state, self.dist_env.rank)
        if self.dist_env.rank == 0:
            checkpoint.remove_stale_unscheduled(save_dir, step)
            _log(self.spec.name, f"checkpoint step{step} ({reason})")

    def metrics(self, step: int, loss: float, lr: float, elapsed: float) -> dict:
        """The metrics.jsonl line of finished step `step` (the update on batch step - 1; PaLM-style
        MFU against the device's peak)."""
        schedule = self.suite.batch_schedule
        batch_size = schedule.batch_size(step - 1)
        tokens_per_s = batch_size * self.suite.seq_length / elapsed
        world = self.dist_env.world_size
        grad_norm = self.engine.get_global_grad_norm()
        record = {
            "step": step, "loss": loss, "lr": lr,
            "grad_norm": float(grad_norm) if grad_norm is not None else float("nan"),
            "tokens_per_s": tokens_per_s,
            "mfu": tokens_per_s * self.built.flops_per_token / (world * self.peak_flops) if self.peak_flops else None,
            "batch_size": batch_size, "samples": schedule.samples_before(step), "step_time_s": elapsed,
        }
        if self.suite.training.precision == "fp16":
            record["loss_scale"] = float(self.engine.optimizer.cur_scale)
        return record


def prepare_run(suite: Suite, spec: ModelSpec, options: RunOptions, dist_env: DistEnv, device: torch.device,
                source: tuple[Path, int] | None) -> Run:
    """Engine (resumed or branched from `source`), this rank's batches and the manifest of a run."""
    rank, world = dist_env.rank, dist_env.world_size
    vocab = vocab_size(suite, spec.shape)
    built = build_engine(spec, suite.training, suite.seq_length, vocab, device, world, options.attention)
    if source is not None:
        checkpoint.load(built.engine, source[0], source[1], rank)
        if rank == 0:
            own = source[0] == suite.layout.checkpoints_dir(spec.name)
            _log(spec.name, f"{'resumed' if own else f'branched from {spec.base}'} at step {source[1]}")
    order = TrainingOrder(suite.layout.data_prefix(spec.data), suite.train_iters, suite.batch_schedule,
                          suite.seq_length, spec.seed, num_samples=suite.num_samples)
    substitution = None
    if spec.substitution:
        table = substitution_map(spec.substitution, suite.layout.tokenizer)
        substitution = Substitution(table, vocab)
        if rank == 0:
            _log(spec.name, f"substitution {spec.substitution}: {len(table)} token pairs")
    batches = RankBatches(order, suite.batch_schedule, built.ds_config["train_micro_batch_size_per_gpu"], rank,
                          world, device, substitution)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return Run(suite, spec, dist_env, device, built, batches, start=source[1] if source else 0,
               fresh=source is None, schedule=set(suite.model_checkpoint_steps(spec.name)),
               manifest=checkpoint_manifest(suite, spec, built, vocab, world),
               peak_flops=peak_flops(device_name, options.peak_flops))


def _check_until(suite: Suite, spec: ModelSpec, until_step: int) -> None:
    if not 0 <= until_step <= suite.train_iters:
        raise PythiaReproError(f"--until-step {until_step} is outside 0..{suite.train_iters} (training.train_iters)")
    if spec.branch_step is not None and until_step <= spec.branch_step:
        raise PythiaReproError(f"{spec.name} branches from {spec.base} at step {spec.branch_step}; "
                               "--until-step must be later")


def train_segment(suite: Suite, model_name: str, until_step: int, options: RunOptions | None = None) -> int:
    """Train `model_name` to `until_step`; 0 when the segment is done, PREEMPTED when stopped early."""
    import torch.distributed as dist

    options = options or RunOptions()
    spec = suite.model(model_name)
    _check_until(suite, spec, until_step)
    dist_env, device = setup_runtime(options)
    rank, world = dist_env.rank, dist_env.world_size
    problem = None
    if rank == 0:
        removed = checkpoint.remove_incomplete(suite.layout.checkpoints_dir(model_name))
        if removed:
            _log(model_name, f"removed incomplete checkpoints {removed}")
        try:
            verify_checkpoints(suite, spec, lambda message: _log(model_name, message))
        except checkpoint.CheckpointError as exc:
            problem = str(exc)
    shared = [problem]
    dist.broadcast_object_list(shared, src=0)  # also the barrier: every rank fails, or none
    if shared[0] is not None:
        raise checkpoint.CheckpointError(shared[0])
    source = starting_point(suite, spec)
    step = source[1] if source else 0
    loss = None
    if step < until_step:
        run = prepare_run(suite, spec, options, dist_env, device, source)
        metrics = MetricsLog(suite.layout, model_name, step, options.tensorboard) if rank == 0 else None
        progress = ProgressLine(model_name, step, until_step, suite.training.log_every) if rank == 0 else None
        if run.fresh and 0 in run.schedule:
            run.save(0, None, "schedule")
        stop = _StopFlag(options.deadline)
        try:
            while step < until_step:
                t0 = time.perf_counter()
                lr = run.engine.get_lr()[0]  # the rate this update uses: DeepSpeed steps the schedule after it
                loss_sum = train_step(run.engine, run.micro_batches(step), suite.training.z_loss)
                if world > 1:
                    dist.all_reduce(loss_sum)
                loss = loss_sum.item() / world
                step += 1
                record = run.metrics(step, loss, lr, time.perf_counter() - t0)
                if metrics is not None:
                    metrics.write(record)
                    progress.update(record)
                if options.on_step is not None:
                    options.on_step(step)
                saved = step in run.schedule or step == until_step
                if saved:
                    run.save(step, loss, "schedule" if step in run.schedule else "segment end")
                if step < until_step and stop.agreed(dist_env, device):
                    reason = stop.reason or "stop agreed with the other ranks"
                    if not saved:
                        run.save(step, loss, reason)
                    if rank == 0:
                        _log(model_name, f"stopped at step {step} ({reason}); rerun to continue")
                    return PREEMPTED
        finally:
            if metrics is not None:
                metrics.close()
    elif rank == 0:  # e.g. killed after its last checkpoint, before Snakemake saw the job finish
        _log(model_name, f"already trained to step {step}: nothing to do")
    if rank == 0:
        _write_marker(suite, model_name, until_step, step, loss)
    dist.barrier()
    return 0


def _write_marker(suite: Suite, model: str, until: int, step: int, loss: float | None) -> None:
    """The segment's Snakemake output, written once its last checkpoint is complete."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    write_json(suite.layout.segment_marker(model, until), {
        "model": model, "until_step": until, "last_checkpoint_step": step, "loss": loss,
        "checkpoints": str(suite.layout.checkpoints_dir(model)), "complete": True, "finished_at": time.time(),
        "rank0_cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
    })
