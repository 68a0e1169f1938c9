"""The trainer's pure parts: LR schedule, weight-decay groups, batch split, substitution, launching."""

from __future__ import annotations

import math
from datetime import datetime
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pythia_repro.data.batch_schedule import BatchSchedule
from pythia_repro.models.build import build_model
from pythia_repro.models.sizes import Shape
from pythia_repro.train.batches import RankBatches, accumulation_steps
from pythia_repro.train.distributed import (
    DistEnv,
    choose_launcher,
    detect,
    expand_hostlist,
    launch_command,
    parse_slurm_time,
    slurm_job_end_time,
)
from pythia_repro.train.optim import param_groups
from pythia_repro.train.schedule import AnnealingLR, annealing_lr, schedule_for
from pythia_repro.train.substitution import Substitution, substitution_map
from pythia_repro.train.trainer import deepspeed_config

PICO = Shape(layers=2, d_model=32, heads=2, ffn=64, lr=1e-3, min_lr=1e-4)


# ----- learning-rate schedule: GPT-NeoX v1.0 AnnealingLR ----------------------------------------
# Pythia-160m: lr 6e-4, min_lr 6e-5, warmup 0.01 x 143000 = 1430 steps, cosine over E = 143000.
PYTHIA_160M = dict(lr=6e-4, min_lr=6e-5, warmup_iters=0.01 * 143000, total_iters=143000)


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, 0.0),  # the first update runs at lr 0
        (1, 6e-4 / 1430),
        (715, 3e-4),  # halfway through warmup
        (1430, 6e-4),  # the last warmup step reaches the peak exactly
        (1431, 3e-4 * (math.cos(math.pi * 1 / 143000) + 1)),  # cosine counts from the end of warmup ...
        (1430 + 71500, 3e-4),  # ... over E (not E - W): cos(pi/2) after E/2 more steps
        (115000, 3e-4 * (math.cos(math.pi * 113570 / 143000) + 1)),  # still above the floor
        (115300, 6e-5),  # floored: lr0/2 (cos + 1) fell below min_lr at n ~ 115,140
        (141570, 6e-5),
        (143000, 6e-5),  # n is capped at E - W, and the floor holds
        (200000, 6e-5),
    ],
)
def test_annealing_lr_matches_hand_computation(n: int, expected: float) -> None:
    assert annealing_lr(n, **PYTHIA_160M) == pytest.approx(expected, rel=1e-12, abs=0)


def test_floor_is_reached_near_step_115k() -> None:
    # lr0/2 (cos(pi x / E) + 1) = 0.1 lr0  <=>  x = E acos(-0.8) / pi, n = x + W
    crossing = 143000 * math.acos(-0.8) / math.pi + 1430
    assert 115_000 < crossing < 115_300
    assert annealing_lr(math.floor(crossing), **PYTHIA_160M) > 6e-5
    assert annealing_lr(math.ceil(crossing), **PYTHIA_160M) == 6e-5


def test_annealing_lr_fractional_warmup_and_no_warmup() -> None:
    # GPT-NeoX keeps warmup = fraction x iters as a float: 0.01 x 256 = 2.56 steps.
    assert annealing_lr(2, lr=1e-3, min_lr=1e-4, warmup_iters=2.56, total_iters=256) == pytest.approx(1e-3 * 2 / 2.56)
    assert annealing_lr(3, lr=1e-3, min_lr=1e-4, warmup_iters=2.56, total_iters=256) == pytest.approx(
        5e-4 * (math.cos(math.pi * (3 - 2.56) / 256) + 1))
    assert annealing_lr(0, lr=1e-3, min_lr=0.0, warmup_iters=0, total_iters=10) == pytest.approx(1e-3)


def test_scheduler_sets_param_groups_and_round_trips_state() -> None:
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=0.0)
    training = SimpleNamespace(train_iters=143000, warmup_fraction=0.01, warmup_steps=None, lr_schedule="neox",
                               lr_constant_steps=10000)
    args = schedule_for(training, Shape(1, 8, 1, 8, lr=6e-4, min_lr=6e-5))
    assert args == {**PYTHIA_160M, "decay_style": "cosine", "style": "neox", "constant_iters": 10000}
    sched = AnnealingLR(opt, **args)
    assert opt.param_groups[0]["lr"] == 0.0
    for _ in range(715):
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(3e-4)
    other = AnnealingLR(torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))]), **args)
    other.load_state_dict(sched.state_dict())
    assert other.get_last_lr() == sched.get_last_lr() and other.num_iters == 715
    assert not callable(sched), "DeepSpeed would take a callable scheduler for a factory"


# ----- weight decay: none on biases and norm parameters -------------------------------------------
@pytest.mark.parametrize("arch", ["gpt-neox", "llama", "palm"])
def test_no_decay_on_biases_and_norms(arch: str) -> None:
    model = build_model(arch, PICO, 128, 16, seed=0)
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    decay_names = {names[id(p)] for p in decay["params"]}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert no_decay_names == {n for n, p in model.named_parameters() if n.endswith("bias") or "norm" in n}
    assert all(p.dim() == 2 for p in decay["params"]) and decay_names
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))  # tied once
    assert [g["weight_decay"] for g in param_groups(model, 0.0)] == [0.0]


# ----- batches: the global batch split over ranks and accumulation steps ---------------------------
class _Order:
    """Training sample j = [j, j + 1, ...]: rows say which samples they are."""

    seq_length = 5

    def samples(self, start: int, stop: int) -> np.ndarray:
        return np.arange(start, stop)[:, None] * 100 + np.arange(self.seq_length + 1)[None, :]


@pytest.mark.parametrize(("world", "micro"), [(1, 8), (1, 2), (2, 2), (4, 1), (2, 4)])
def test_ranks_and_micro_batches_cover_the_global_batch_in_gpt_neox_order(world: int, micro: int) -> None:
    step, global_batch = 3, 8
    seen = {}
    for rank in range(world):
        feeder = RankBatches(_Order(), BatchSchedule.constant(global_batch), micro, rank, world, torch.device("cpu"))
        for k, (inputs, labels) in enumerate(feeder.micro_batches(step)):
            assert inputs.shape == labels.shape == (micro, 5) and inputs.dtype == torch.int64
            assert torch.equal(inputs[:, 1:], labels[:, :-1])  # labels are inputs shifted by one
            for row in inputs[:, 0].tolist():
                seen[row // 100] = (k, rank)
    assert sorted(seen) == list(range(step * global_batch, (step + 1) * global_batch))
    # GPT-NeoX: accumulation step k takes the next world x micro samples, rank r its r-th slice.
    for j, (k, rank) in seen.items():
        assert (j - step * global_batch) // micro == k * world + rank


# Ramp 2 sequences for steps 0-2, 4 for steps 3-4, then 8: the first sample of each step by hand.
RAMP = BatchSchedule(8, ((3, 2), (5, 4)))
RAMP_STARTS = [0, 2, 4, 6, 10, 14, 22, 30, 38]


@pytest.mark.parametrize(("world", "micro"), [(1, 1), (1, 2), (2, 1)])
def test_a_batch_ramp_cuts_each_step_from_the_samples_before_it(world: int, micro: int) -> None:
    feeders = [RankBatches(_Order(), RAMP, micro, rank, world, torch.device("cpu")) for rank in range(world)]
    for step in range(8):
        seen = []
        for feeder in feeders:
            batches = feeder.micro_batches(step)
            assert len(batches) == (RAMP_STARTS[step + 1] - RAMP_STARTS[step]) // (micro * world)
            seen += [row // 100 for inputs, _ in batches for row in inputs[:, 0].tolist()]
        assert sorted(seen) == list(range(RAMP_STARTS[step], RAMP_STARTS[step + 1])), step


def test_a_ramp_size_the_ranks_cannot_split_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="global_batch_size 2 is not a multiple of micro_batch_size 1 x 4 ranks"):
        RankBatches(_Order(), RAMP, 1, 0, 4, torch.device("cpu"))


def test_indivisible_batch_is_an_error() -> None:
    assert accumulation_steps(1024, 32, 32) == 1 and accumulation_steps(1024, 8, 64) == 2
    with pytest.raises(ValueError, match="not a multiple"):
        accumulation_steps(12, 5, 1)


def test_deepspeed_config_from_training_section() -> None:
    training = SimpleNamespace(global_batch_size=1024, micro_batch_size=16, grad_clip=1.0, zero_stage=1,
                               precision="fp16", batch_schedule=BatchSchedule.constant(1024))
    cfg = deepspeed_config(training, world_size=32, num_params=10**9, device=torch.device("cpu"))
    assert cfg["gradient_accumulation_steps"] == 2 and cfg["train_micro_batch_size_per_gpu"] == 16
    assert cfg["fp16"]["enabled"] and cfg["fp16"]["loss_scale"] == 0 and cfg["fp16"]["initial_scale_power"] == 12
    assert not cfg["bf16"]["enabled"] and cfg["gradient_clipping"] == 1.0
    assert cfg["zero_optimization"]["stage"] == 1 and cfg["zero_optimization"]["reduce_bucket_size"] == 5e8
    no_micro = deepspeed_config(SimpleNamespace(**{**vars(training), "micro_batch_size": None}), 4, 1000,
                                torch.device("cpu"))
    assert no_micro["train_micro_batch_size_per_gpu"] == 256 and no_micro["gradient_accumulation_steps"] == 1
    # With a ramp the micro-batch is its smallest batch over the ranks; the config holds the last.
    ramped = SimpleNamespace(**{**vars(training), "micro_batch_size": None,
                                "batch_schedule": BatchSchedule(1024, ((10, 256), (20, 512)))})
    cfg = deepspeed_config(ramped, 4, 1000, torch.device("cpu"))
    assert (cfg["train_micro_batch_size_per_gpu"], cfg["gradient_accumulation_steps"], cfg["train_batch_size"]) == (
        64, 4, 1024)


# ----- substitution ---------------------------------------------------------------------------
PYTHIA_GENDER_SWAP = {754: 1500, 3032: 4058, 8389: 10759, 1328: 2993, 521: 617, 344: 703, 779: 617, 8701: 379,
                      13243: 379, 248: 6689}  # PYTHIA.md section 4


def test_gender_swap_map_is_pythias_for_the_20b_tokenizer(neox_tokenizer_path) -> None:
    assert substitution_map("gender_swap", neox_tokenizer_path) == PYTHIA_GENDER_SWAP


def test_substitution_applies_to_every_position() -> None:
    sub = Substitution({5: 6, 7: 6}, vocab_size=10)
    tokens = np.array([[5, 7, 6, 1], [0, 5, 9, 7]])
    assert sub(tokens).tolist() == [[6, 6, 6, 1], [0, 6, 9, 6]]
    with pytest.raises(ValueError, match="unknown substitution"):
        substitution_map("nope", "x.json")


# ----- distributed environment and launchers --------------------------------------------------
def test_detect_rank_from_torchrun_slurm_or_nothing() -> None:
    assert detect({}) == DistEnv()
    torchrun = {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "n1", "MASTER_PORT": "1234"}
    assert detect(torchrun) == DistEnv(3, 8, 1, "n1", 1234, "torchrun")
    step = {"SLURM_JOB_ID": "4711", "SLURM_PROCID": "5", "SLURM_STEP_NUM_TASKS": "8", "SLURM_NTASKS": "8",
            "SLURM_LOCALID": "1", "SLURM_STEP_NODELIST": "gpu[07-08]", "SLURM_LAUNCH_NODE_IPADDR": "10.0.0.7"}
    env = detect(step)
    assert (env.rank, env.world_size, env.local_rank, env.master_addr) == (5, 8, 1, "gpu07")
    assert env.master_port == 20000 + 4711 and env.launcher == "slurm"
    # A batch script (no srun step) is one process, whatever the allocation's task count.
    assert detect({"SLURM_JOB_ID": "1", "SLURM_PROCID": "0", "SLURM_NTASKS": "8"}) == DistEnv()


def test_expand_hostlist() -> None:
    assert expand_hostlist("gpu[01-03,07],login1") == ["gpu01", "gpu02", "gpu03", "gpu07", "login1"]
    assert expand_hostlist("node7") == ["node7"]
    assert expand_hostlist("a[8-10]-ib") == ["a8-ib", "a9-ib", "a10-ib"]


def test_launcher_choice_and_commands(monkeypatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: f"/usr/bin/{name}")
    assert choose_launcher(1, {"SLURM_JOB_ID": "1"}) == "none"
    assert choose_launcher(4, {"SLURM_JOB_ID": "1"}) == "slurm"
    assert choose_launcher(4, {}) == "torchrun"
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert choose_launcher(4, {"SLURM_JOB_ID": "1"}) == "torchrun"
    worker = ["train", "--config", "c.yaml", "--model", "m"]
    srun = launch_command("slurm", 4, worker)
    assert srun[:3] == ["srun", "--ntasks=4", "--kill-on-bad-exit=1"] and srun[-5:] == worker
    assert launch_command("slurm", 2, worker, cpus_per_task=8)[:3] == ["srun", "--ntasks=2", "--cpus-per-task=8"]
    torchrun = launch_command("torchrun", 2, worker)
    assert "--nproc-per-node=2" in torchrun and torchrun[-7:] == ["-m", "pythia_repro.cli", *worker]


def test_slurm_times() -> None:
    assert parse_slurm_time("2026-11-23T18:05:12") == datetime(2026, 11, 23, 18, 5, 12).timestamp()
    assert parse_slurm_time("2026-11-23T18:05:12\n") is not None  # squeue's line end
    for no_limit in ("N/A", "NONE", "Unknown", ""):
        assert parse_slurm_time(no_limit) is None
    assert slurm_job_end_time({}) is None  # not in a SLURM job
