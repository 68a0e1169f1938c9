"""What each job asks the scheduler for (memory, CPUs, GPUs), derived from the suite.

The rules only name these; the formulas live here so they are tested and shared. Parameter
counts are `Suite.approx_parameters` (torch-free, within 1% of the published counts).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from pythia_repro.config import Suite

MB = 2**20


def train_threads_per_rank(suite: Suite) -> int:
    """CPU threads per rank: one on CPU suites (tiny models, several jobs side by side), more on
    GPU nodes for data loading and the host side of DeepSpeed. A profile may override it."""
    return 8 if suite.training.on_gpu else 1


def train_mem_mb(suite: Suite, model: str) -> int:
    """fp32 weights, grads and Adam state (~20 bytes/param) per rank, plus a fixed allowance for
    the Python/DeepSpeed/transformers runtime."""
    return suite.training.ranks * (1500 + 20 * suite.approx_parameters(model) // MB)


def export_mem_mb(suite: Suite, model: str) -> int:
    """fp32 weights merged from the ZeRO shards (4 B/param) + the exported copy + one optimizer
    shard that zero_to_fp32 holds while reading it (12 B/param / ranks) + the runtime."""
    per_param = 4 + suite.export.bytes_per_parameter + 12 / suite.training.ranks
    return int(3000 + per_param * suite.approx_parameters(model) / MB)


def eval_mem_mb(suite: Suite, model: str) -> int:
    """The exported weights, activations and the harness: ~1.5x the checkpoint plus runtime."""
    return 4000 + 3 * suite.export.bytes_per_parameter * suite.approx_parameters(model) // (2 * MB)


def model_gpus(suite: Suite, model: str) -> int:
    """GPUs of a job that loads `model`'s export (evaluation, the case studies): its weights in the
    export dtype plus a quarter for activations and the KV cache, over `evaluate.gpu_memory_gb`
    each. More than one and the job splits the model's layers over them (`model_parallel`)."""
    need = 1.25 * suite.export.bytes_per_parameter * suite.approx_parameters(model)
    return max(1, math.ceil(need / (suite.evaluate.gpu_memory_gb * 2**30)))


def model_parallel(suite: Suite, model: str, device: str) -> bool:
    """Whether a job on `device` loads `model` split over several GPUs (accelerate's device_map)."""
    return device.startswith("cuda") and model_gpus(suite, model) > 1


def model_gpus_resource(suite: Suite, on_gpu: bool) -> dict[str, Callable]:
    """The `gpu` resource of a rule whose jobs load one model ({model} wildcard), on GPUs only."""
    return {"gpu": lambda wc: model_gpus(suite, wc.model)} if on_gpu else {}


def gpus(on_gpu: bool, count: int = 1) -> dict:
    """The `gpu` resource of a job, only when it runs on GPUs."""
    return {"gpu": count} if on_gpu else {}
