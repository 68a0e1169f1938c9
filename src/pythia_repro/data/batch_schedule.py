"""How many training samples each step takes: one global batch size, or a ramp of them (PaLM).

Step t trains on training samples [samples_before(t), samples_before(t + 1)) of the data order,
in order. With one batch size B that is [t*B, (t+1)*B), GPT-NeoX's rule and so Pythia's. PaLM
(Chowdhery et al. 2022, Section 5) ramps the batch up instead, 540B from 512 sequences per step
to step 50k, to 1024 until step 115k and 2048 after, "the smaller models followed similar
schedules". A schedule only cuts the one sample stream into steps; the index maps are GPT-NeoX's
for the samples it consumes (`num_samples`), so a constant schedule's order is Pythia's exactly.

The methods take a step or sample index, or an integer array of them (the case studies convert
whole ranges at once).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from pythia_repro.data.order import gpt_neox_num_samples
from pythia_repro.errors import PythiaReproError


@dataclass(frozen=True)
class BatchSchedule:
    """Global batch sizes by step: `ramp` entries (until_step, size) first, then `final`.

    Steps below an entry's until_step (and at or past the previous one's) take its size; from
    the last until_step on, every step takes `final` sequences.
    """

    final: int
    ramp: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        # Messages name the config keys (training.batch_ramp) the schedule is built from.
        if self.final < 1:
            raise PythiaReproError(f"global_batch_size: {self.final} must be at least 1")
        previous = 0
        for i, (until, size) in enumerate(self.ramp):
            if until <= previous:
                bound = f"the previous entry's {previous}" if i else "0"
                raise PythiaReproError(f"batch_ramp[{i}].until_step: {until} must be greater than {bound}")
            if size < 1:
                raise PythiaReproError(f"batch_ramp[{i}].global_batch_size: {size} must be at least 1")
            previous = until

    @classmethod
    def constant(cls, size: int) -> BatchSchedule:
        return cls(int(size))

    @classmethod
    def from_config(cls, global_batch_size: int, batch_ramp: Iterable[Mapping[str, int]]) -> BatchSchedule:
        """From `training.global_batch_size` and `training.batch_ramp` ({until_step, global_batch_size} each)."""
        ramp = tuple((int(e["until_step"]), int(e["global_batch_size"])) for e in batch_ramp)
        return cls(int(global_batch_size), ramp)

    @property
    def sizes(self) -> tuple[int, ...]:
        """Every phase's batch size, in step order (the final one last)."""
        return (*(size for _, size in self.ramp), self.final)

    @property
    def smallest(self) -> int:
        return min(self.sizes)

    # Phase p covers steps [starts[p], starts[p + 1]) at sizes[p] samples each, beginning at
    # training sample offsets[p].
    @cached_property
    def _starts(self) -> np.ndarray:
        return np.array([0, *(until for until, _ in self.ramp)], dtype=np.int64)

    @cached_property
    def _sizes(self) -> np.ndarray:
        return np.array(self.sizes, dtype=np.int64)

    @cached_property
    def _offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(np.diff(self._starts) * self._sizes[:-1])]).astype(np.int64)

    def _phase(self, steps: np.ndarray) -> np.ndarray:
        if steps.size and steps.min() < 0:
            raise PythiaReproError(f"step {int(steps.min())}: steps count from 0")
        return np.searchsorted(self._starts, steps, side="right") - 1

    def batch_size(self, step: int | np.ndarray) -> int | np.ndarray:
        """Samples step `step` trains on."""
        steps = np.asarray(step, dtype=np.int64)
        out = self._sizes[self._phase(steps)]
        return int(out) if out.ndim == 0 else out

    def samples_before(self, step: int | np.ndarray) -> int | np.ndarray:
        """Training samples consumed by the steps before `step` (t x B for one size B)."""
        steps = np.asarray(step, dtype=np.int64)
        phase = self._phase(steps)
        out = self._offsets[phase] + (steps - self._starts[phase]) * self._sizes[phase]
        return int(out) if out.ndim == 0 else out

    def step_of(self, j: int | np.ndarray) -> tuple[int, int] | tuple[np.ndarray, np.ndarray]:
        """(step, position in that step's batch) of training sample `j`."""
        samples = np.asarray(j, dtype=np.int64)
        if samples.size and samples.min() < 0:
            raise PythiaReproError(f"training sample {int(samples.min())}: samples count from 0")
        phase = np.searchsorted(self._offsets, samples, side="right") - 1
        step, position = np.divmod(samples - self._offsets[phase], self._sizes[phase])
        step = step + self._starts[phase]
        return (int(step), int(position)) if step.ndim == 0 else (step, position)

    def num_samples(self, train_iters: int) -> int:
        """GPT-NeoX's index-map request for `train_iters` steps: 0.5% more than they consume."""
        return gpt_neox_num_samples(self.samples_before(train_iters))

    def __str__(self) -> str:
        """'1024', or '512 until step 50000, 1024 until step 115000, then 2048'."""
        if not self.ramp:
            return str(self.final)
        return ", ".join(f"{size} until step {until}" for until, size in self.ramp) + f", then {self.final}"
