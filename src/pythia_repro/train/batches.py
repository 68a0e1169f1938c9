"""This rank's micro-batches of a training step, cut from the global batch as GPT-NeoX cuts it.

Step t trains on training samples [t*B, (t+1)*B). GPT-NeoX's sequential batch sampler hands out
B/G consecutive samples per gradient-accumulation step (G of them), and each data-parallel rank
r of W takes its micro_batch slice of those: micro-step k of rank r gets samples
t*B + k*W*m + r*m + [0, m). Every rank reads only its own rows.
"""

from __future__ import annotations

import numpy as np
import torch

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

    def __init__(self, order, global_batch: int, micro_batch: int, rank: int, world_size: int,
                 device: torch.device, substitution: Substitution | None = None) -> None:
        self.order, self.global_batch, self.micro_batch = order, global_batch, micro_batch
        self.rank, self.world_size, self.device = rank, world_size, device
        self.substitution = substitution
        self.accumulation = accumulation_steps(global_batch, micro_batch, world_size)

    def rows(self, step: int, k: int) -> tuple[int, int]:
        """[start, stop) training-sample indices of micro-step k of this rank at `step`."""
        start = step * self.global_batch + (k * self.world_size + self.rank) * self.micro_batch
        return start, start + self.micro_batch

    def micro_batches(self, step: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out = []
        for k in range(self.accumulation):
            tokens = self.order.samples(*self.rows(step, k))
            if self.substitution is not None:
                tokens = self.substitution(tokens)  # inputs and labels alike
            tokens = torch.from_numpy(np.ascontiguousarray(tokens, dtype=np.int64))
            tokens = tokens.to(self.device, non_blocking=True)
            out.append((tokens[:, :-1], tokens[:, 1:]))
        return out
