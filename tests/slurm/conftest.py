"""The local single-node SLURM cluster (tests/slurm/harness.py) as pytest session fixtures.

`slurm_cluster` starts munged, slurmctld and slurmd once per test session under a pytest tmp dir and
stops them at the end. Missing binaries or a cluster that does not come up fail the requesting test
(with the install hint or the daemon logs); they are never skipped silently.

To use the cluster from another test folder, move these fixtures (and `load_harness`) to tests/conftest.py.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SLURM_TESTS = Path(__file__).resolve().parent


def load_harness():
    """tests/slurm/harness.py as a module (--import-mode=importlib: loaded by path, once, fixed name)."""
    name = "pythia_repro_tests_slurm_harness"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SLURM_TESTS / "harness.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def slurm_harness():
    """The harness module itself (SlurmCluster, missing_binaries, ...)."""
    return load_harness()


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A running single-node SLURM cluster (harness.SlurmCluster); run clients with `slurm_cluster.env()`."""
    yield from load_harness().session_cluster(tmp_path_factory)


@pytest.fixture(scope="session")
def slurm_profile() -> Path:
    """Snakemake profile directory for the local test cluster (tests/slurm/profile)."""
    return SLURM_TESTS / "profile"
