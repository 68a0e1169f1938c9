"""Ctrl-C stops training like SIGTERM (checkpoint, exit 75; a second one aborts), and
environment failures (full disk, read-only or unwritable paths, missing folders, no memory)
are one line naming the path, not a traceback."""

from __future__ import annotations

import errno
import os
import signal
import sys
from pathlib import Path

import pytest

from pythia_repro import cli
from pythia_repro.config import load_suite
from pythia_repro.layout import Layout
from pythia_repro.train.checkpoint import complete_checkpoints

MODEL = "pythia-pico"


def test_sigint_checkpoints_and_exits_preempted(tmp_path: Path, tiny_suite) -> None:
    import subprocess

    config = tiny_suite(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    proc = subprocess.run(
        [sys.executable, "-m", "pythia_repro.testing.step_signal", "3", "INT", "train", "--config", str(config),
         "--model", MODEL, "--until-step", "4", "--no-tensorboard"],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 75, proc.stderr[-3000:]
    assert "Ctrl-C" in proc.stderr and "stopped at step 3 (signal SIGINT)" in proc.stderr
    ckpts = complete_checkpoints(Layout(load_suite(config).root).checkpoints_dir(MODEL))
    assert ckpts[3]["scheduled"] is False and ckpts[3]["reason"] == "signal SIGINT"
    assert "KeyboardInterrupt" not in proc.stderr


def test_second_sigint_restores_the_default_action() -> None:
    from pythia_repro.train.trainer import STOP_SIGNALS, _StopFlag

    saved = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    try:
        flag = _StopFlag(None)
        os.kill(os.getpid(), signal.SIGINT)
        assert flag.reason == "signal SIGINT"
        assert signal.getsignal(signal.SIGINT) is signal.SIG_DFL  # the next Ctrl-C kills at once
        assert signal.getsignal(signal.SIGTERM) == flag._handle
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@pytest.fixture
def config(tmp_path: Path, tiny_suite) -> Path:
    return tiny_suite(tmp_path)


def _fail_plot_with(monkeypatch, exc: BaseException) -> None:
    """Make plot-loss's figure write fail the way the filesystem would."""
    import pythia_repro.train.plot as plot

    def write(_suite, output):
        raise exc

    monkeypatch.setattr(plot, "plot_loss", write)


@pytest.mark.parametrize(("code", "says"), [
    (errno.ENOSPC, "no space left on device; free space"),
    (errno.EROFS, "read-only file system"),
    (errno.EACCES, "permission denied; check the owner and mode"),
    (errno.EPERM, "operation not permitted"),
])
def test_environment_errors_are_one_line(config: Path, tmp_path: Path, monkeypatch, capsys, code, says) -> None:
    out = tmp_path / "figures" / "loss.png"
    _fail_plot_with(monkeypatch, OSError(code, os.strerror(code), str(out)))
    assert cli.main(["plot-loss", "--config", str(config), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0] == f"pythia-repro plot-loss: error: {out}: {says}" or err[0].startswith(
        f"pythia-repro plot-loss: error: {out}: {says}")


def test_enospc_from_a_real_write(config: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    """ENOSPC raised by the write itself, inside atomic_file (the temp file is cleaned up)."""
    import pythia_repro.train.plot as plot
    from pythia_repro import atomic

    target = tmp_path / "out" / "loss.json"

    class FullDisk:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, _data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))

    real_fdopen = os.fdopen
    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, mode: FullDisk(real_fdopen(fd, mode)))
    monkeypatch.setattr(plot, "plot_loss", lambda _suite, output: atomic.write_json(output, {"x": 1}))
    assert cli.main(["plot-loss", "--config", str(config), "--output", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pythia-repro plot-loss: error: {target}: no space left on device")
    assert not list(target.parent.glob(".*.tmp")), "the partial temporary was left behind"


def test_missing_output_folder_and_memory(config: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "gone" / "loss.png"
    _fail_plot_with(monkeypatch, FileNotFoundError(errno.ENOENT, "No such file or directory", str(out)))
    assert cli.main(["plot-loss", "--config", str(config), "--output", str(out)]) == 2
    assert f"folder {out.parent} does not exist" in capsys.readouterr().err

    _fail_plot_with(monkeypatch, MemoryError())
    assert cli.main(["plot-loss", "--config", str(config), "--output", str(out)]) == 2
    assert "error: out of memory" in capsys.readouterr().err


def test_other_os_errors_keep_their_traceback(config: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "loss.png"
    _fail_plot_with(monkeypatch, OSError(errno.EIO, "Input/output error", str(out)))
    with pytest.raises(OSError, match="Input/output error"):
        cli.main(["plot-loss", "--config", str(config), "--output", str(out)])
    # A missing file whose folder exists is an input problem or a bug, not "create the folder".
    _fail_plot_with(monkeypatch, FileNotFoundError(errno.ENOENT, "No such file or directory", str(out)))
    with pytest.raises(FileNotFoundError):
        cli.main(["plot-loss", "--config", str(config), "--output", str(out)])
