"""Per-step training metrics: `metrics.jsonl` (one line per step), TensorBoard, progress lines.

The JSONL file is append-only and resume-safe: a run resuming from step s first drops the lines
of steps after s (they were trained past the checkpoint it resumes from, and will be again), so
every step appears exactly once however often a segment was killed and rerun.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from pythia_repro.atomic import write_text
from pythia_repro.layout import Layout
from pythia_repro.progress import _fmt_duration

# Dense bf16 peak FLOP/s per device (PaLM-style MFU is reported against these).
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "A10G": 125e12, "L40S": 362e12, "V100": 125e12}


def peak_flops(device_name: str | None, override: float | None = None) -> float | None:
    """Peak FLOP/s of one device: the override, else the table entry its name contains, else None."""
    if override:
        return float(override)
    if not device_name:
        return None
    for key, value in PEAK_FLOPS.items():
        if key.lower() in device_name.lower():
            return value
    return None


def read_metrics(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line torn by a kill is the last one
    return rows


class MetricsLog:
    """Rank 0's metrics sink: JSONL + TensorBoard, both rewound to `resume_step` on open."""

    def __init__(self, layout: Layout, model: str, resume_step: int, tensorboard: bool = True) -> None:
        self.path = layout.metrics(model)
        kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
        write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self._fh = open(self.path, "a")
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step hides events of steps > resume_step written before a kill.
            self._tb = SummaryWriter(str(layout.tensorboard(model)), purge_step=resume_step + 1)

    def write(self, record: dict) -> None:
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()
        if self._tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self._tb.add_scalar(f"train/{key}", value, record["step"])

    def close(self) -> None:
        self._fh.close()
        if self._tb is not None:
            self._tb.close()


class ProgressLine:
    """`[train NAME] step 120/256 loss 4.213 lr 9.1e-04 | 52,000 tok/s MFU 31.2% | ETA 0:42` lines."""

    def __init__(self, label: str, start_step: int, end_step: int, every: int, stream=None) -> None:
        self.label, self.start, self.end, self.every = label, start_step, end_step, every
        self.stream = stream or sys.stderr
        self.t0 = time.monotonic()

    def update(self, record: dict) -> None:
        step = record["step"]
        if step % self.every and step != self.end:
            return
        elapsed = time.monotonic() - self.t0
        done = step - self.start
        eta = elapsed / done * (self.end - step) if done else 0.0
        msg = (f"[train {self.label}] step {step}/{self.end} loss {record['loss']:.4f} lr {record['lr']:.3e}"
               f" grad_norm {record['grad_norm']:.3f} | {record['tokens_per_s']:,.0f} tok/s")
        if record.get("mfu") is not None:
            msg += f" MFU {100 * record['mfu']:.1f}%"
        msg += f" | elapsed {_fmt_duration(elapsed)} ETA {_fmt_duration(eta)}"
        print(msg, file=self.stream, flush=True)
