"""Progress for long work: periodic log lines with count, rate and ETA.

Plain lines (not a redrawn bar) because most of our work runs under Snakemake or SLURM,
whose logs are files; one line every `interval` seconds stays readable there.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _fmt_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """`with Progress("tokenize", total=n, unit="docs") as p: p.update(k)`."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        unit: str = "items",
        interval: float = 5.0,
        stream: TextIO | None = None,
    ) -> None:
        self.label, self.total, self.unit, self.interval = label, total, unit, interval
        self.stream = stream or sys.stderr
        self.count = 0
        self.start = self._last = time.monotonic()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self._emit(final=True)

    def update(self, n: int = 1) -> None:
        self.count += n
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._emit()

    def _emit(self, final: bool = False) -> None:
        elapsed = time.monotonic() - self.start
        rate = self.count / elapsed if elapsed > 0 else 0.0
        msg = f"[{self.label}] {self.count:,}"
        if self.total:
            msg += f"/{self.total:,} ({100 * self.count / self.total:.1f}%)"
        msg += f" {self.unit}, {rate:,.1f} {self.unit}/s, elapsed {_fmt_duration(elapsed)}"
        if self.total and not final and rate > 0:
            msg += f", ETA {_fmt_duration((self.total - self.count) / rate)}"
        if final:
            msg += ", done"
        print(msg, file=self.stream, flush=True)
