"""This rank's micro-batches of a training step, cut from the global batch as GPT-NeoX cuts it.

Step t trains on training samples [s_t, s_t + B_t), s_t = samples_before(t) and B_t = the step's
global batch size (t*B and B without a batch ramp). GPT-NeoX's sequential batch sampler hands
out B_t/G_t consecutive samples per gradient-accumulation step (G_t of them), and each
data-parallel rank r of W takes its micro_batch slice of those: micro-step k of rank r gets
samples s_t + k*W*m + r*m + [0, m). A ramp changes G_t, never m. Every rank reads only its own
rows.
"""

from __future__ import annotations

import numpy as np
import torch

from pythia_repro.data.batch_schedule import BatchSchedule
from pythia_repro.errors import PythiaReproError
from pythia_repro.train.substitution import Substitution


def accumulation_steps(global_batch: int, micro_batch: int, world_size: int) -> int:
    if global_batch % (micro_batch * world_size):
        raise PythiaReproError(
            f"global_batch_size {global_batch} is not a multiple of micro_batch_size {micro_batch}"
            f" x {world_size} ranks"
        )
    return global_batch // (micro_batch * world_size)


class RankBatches:
    """`micro_batches(step)` -> [(inputs, labels)] for this rank, as int64 tensors on `device`."""

    def __init__(self, order, schedule: BatchSchedule, micro_batch: int, rank: int, world_size: int,
                 device: torch.device, substitution: Substitution | None = None) -> None:
        self.order, self.schedule, self.micro_batch = order, schedule, micro_batch
        self.rank, self.world_size, self.device = rank, world_size, device
        self.substitution = substitution
        for size in schedule.sizes:  # every phase of a ramp, before the first step
            accumulation_steps(size, micro_batch, world_size)

    def accumulation(self, step: int) -> int:
        """Micro-batches per rank at `step`."""
        return accumulation_steps(self.schedule.batch_size(step), self.micro_batch, self.world_size)

    def rows(self, step: int, k: int) -> tuple[int, int]:
        """[start, stop) training-sample indices of micro-step k of this rank at `step`."""
        start = self.schedule.samples_before(step) + (k * self.world_size + self.rank) * self.micro_batch
        return start, start + self.micro_batch

    def micro_batches(self, step: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out = []
        for k in range(self.accumulation(step)):
            tokens = self.order.samples(*self.rows(step, k))
            if self.substitution is not None:
                tokens = self.substitution(tokens)  # inputs and labels alike
            tokens = torch.from_numpy(np.ascontiguousarray(tokens, dtype=np.int64))
            tokens = tokens.to(self.device, non_blocking=True)
            out.append((tokens[:, :-1], tokens[:, 1:]))
        return out
