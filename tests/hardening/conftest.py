"""Fixtures of the hardening tests: the training tests' tiny suite and CLI runner, shared.

Test folders cannot import each other's conftest (--import-mode=importlib), so this loads
tests/train/conftest.py by path and re-exports its fixtures.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "_hardening_train_conftest", Path(__file__).resolve().parents[1] / "train" / "conftest.py")
_train = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_train)

tiny_suite = _train.tiny_suite
run_cli = _train.run_cli
build_tiny_suite = _train.build_tiny_suite
cli = _train.cli
