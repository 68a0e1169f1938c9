"""Upload by revision: the offline mirror loads with from_pretrained(revision=...) under
HF_HUB_OFFLINE=1; the Hub path, tested at the HTTP boundary against a loopback server, retries
transient errors, uploads nothing twice and never shows the token."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from pythia_repro.config import load_suite
from pythia_repro.export.upload import (
    HubTarget,
    MirrorTarget,
    UploadError,
    is_transient,
    local_files,
    upload_checkpoint,
    with_retries,
)
from pythia_repro.layout import Layout
from pythia_repro.testing.checkpoints import PROBE_IDS, reference_logits_path
from pythia_repro.testing.fake_hub import FakeHub, git_sha1

TOKEN = "hf_TESTtoken_do_not_log_4242"


def suite_with(tiny_suite, tmp_path, **upload):
    config, _ = tiny_suite
    cfg = yaml.safe_load(config.read_text())
    cfg["upload"] = {**cfg["upload"], **upload}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, load_suite(path)


def test_mirror_loads_offline_by_revision(tiny_suite, exported, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    mirror = tmp_path / "mirror"
    _, suite = suite_with(tiny_suite, tmp_path, target="mirror", mirror_dir=str(mirror))
    receipts = {}
    for step in (4, 8):
        receipts[step] = upload_checkpoint(suite, "pythia-pico-palm", step, exported("pythia-pico-palm", step),
                                           receipt=tmp_path / f"step{step}.json")
    assert list(receipts[4]["revisions"]) == ["step4"]
    assert list(receipts[8]["revisions"]) == ["step8", "main"]  # the final step is also main
    assert json.loads((tmp_path / "step8.json").read_text())["repo_id"] == "tiny-org/pythia-pico-palm"

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    for revision, step in (("step4", 4), ("step8", 8), ("main", 8)):
        model = AutoModelForCausalLM.from_pretrained("tiny-org/pythia-pico-palm", revision=revision, cache_dir=mirror)
        tok = AutoTokenizer.from_pretrained("tiny-org/pythia-pico-palm", revision=revision, cache_dir=mirror)
        assert tok.eos_token == "<|endoftext|>"
        with torch.no_grad():
            logits = model(input_ids=torch.tensor(PROBE_IDS)).logits
        ref = torch.load(reference_logits_path(Layout(suite.root).model_dir("pythia-pico-palm"), step, 0))
        torch.testing.assert_close(logits, ref, rtol=0, atol=1e-5)

    # The layout of a huggingface_hub cache: refs name commits, snapshots link into blobs.
    repo = mirror / "models--tiny-org--pythia-pico-palm"
    commit = (repo / "refs" / "step8").read_text()
    assert (repo / "refs" / "main").read_text() == commit
    link = repo / "snapshots" / commit / "model.safetensors"
    assert link.is_symlink() and link.resolve().parent == (repo / "blobs").resolve()

    # A rerun writes nothing: same commits, no blob rewritten.
    stamps = {p: p.stat().st_mtime_ns for p in (repo / "blobs").iterdir()}
    again = upload_checkpoint(suite, "pythia-pico-palm", 8, exported("pythia-pico-palm", 8))
    assert {r["uploaded"] for r in again["revisions"].values()} == {False}
    assert {p: p.stat().st_mtime_ns for p in (repo / "blobs").iterdir()} == stamps


def test_mirror_blobs_are_named_like_the_hub(exported):
    files = {f.path: f for f in local_files(exported("pythia-pico", 4))}
    weights, config = files["model.safetensors"], files["config.json"]
    assert weights.is_lfs and weights.etag == weights.sha256  # LFS files: sha256
    assert not config.is_lfs and config.etag == git_sha1(config.abspath.read_bytes())  # git blob id
    assert len(MirrorTarget.commit_id(list(files.values()))) == 40


def _hub_env(hub: FakeHub, tmp_path, token: str | None = TOKEN) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("TRANSFORMERS_OFFLINE", None)  # huggingface_hub honours it too
    env.pop("HF_TOKEN", None)
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf-home"), NO_PROXY="127.0.0.1,localhost",
               HF_HUB_DISABLE_TELEMETRY="1")
    if token is not None:
        env["HF_TOKEN"] = token
    return env


def _upload_script(config, exports: dict, receipts) -> str:
    """Several CLI uploads in one interpreter (the CLI's imports take seconds each time)."""
    calls = [
        ["upload", "--config", str(config), "--model", "pythia-pico-palm", "--step", str(step),
         "--input", str(path), "--receipt", str(receipts / f"step{step}.json")]
        for step, path in exports.items()
    ]
    return (
        "import sys\nfrom pythia_repro.cli import main\n"
        f"codes = [main(c) for c in {calls!r}]\n"
        "sys.exit(max(codes))\n"
    )


def test_hub_upload_retries_is_idempotent_and_keeps_the_token_secret(tiny_suite, exported, tmp_path):
    config, suite = suite_with(tiny_suite, tmp_path, target="hub", namespace="tiny-org", max_retries=3)
    exports = {4: exported("pythia-pico-palm", 4), 8: exported("pythia-pico-palm", 8)}
    receipts = tmp_path / "receipts"
    with FakeHub() as hub:
        hub.fail_next.append((r"^GET /api/models/", 503))        # the first look at the repo
        hub.fail_next.append((r"^POST /api/models/.*/commit/", 502))  # and the first commit
        env = _hub_env(hub, tmp_path)
        first = subprocess.run([sys.executable, "-c", _upload_script(config, exports, receipts)], env=env,
                               capture_output=True, text=True, timeout=300)
        assert first.returncode == 0, first.stderr[-3000:]
        assert "retry 1/3" in first.stderr and "503" in first.stderr and "502" in first.stderr

        repo = hub.repos["tiny-org/pythia-pico-palm"]
        assert set(repo.branches) == {"main", "step4", "step8"}
        for branch, step in (("step4", 4), ("step8", 8), ("main", 8)):
            files = repo.branches[branch]["files"]
            for f in local_files(exports[step]):
                assert files[f.path] == f.abspath.read_bytes(), (branch, f.path)
        receipt = json.loads((receipts / "step8.json").read_text())
        assert receipt["revisions"]["main"]["commit"] == repo.branches["main"]["commit"]
        assert receipt["revisions"]["step8"]["uploaded"] is True

        # Every request carried the token from the environment, and only from there.
        api = [r for r in hub.requests if r.path.startswith("/api/models") or r.path.startswith("/api/repos")]
        assert api and all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in api)

        # A rerun only looks: no repo/branch creation, no preupload, no commit.
        hub.requests.clear()
        again = subprocess.run([sys.executable, "-c", _upload_script(config, exports, receipts)], env=env,
                               capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr[-3000:]
        assert [r.path for r in hub.writes()] == []
        looked = {r.path for r in hub.requests if r.path.startswith("/api/models")}
        assert looked == {f"/api/models/tiny-org/pythia-pico-palm/revision/{b}" for b in ("step4", "step8", "main")}
        assert json.loads((receipts / "step8.json").read_text())["revisions"]["main"]["uploaded"] is False

    for text in (first.stdout, first.stderr, again.stdout, again.stderr,
                 *(p.read_text() for p in receipts.iterdir())):
        assert TOKEN not in text


def test_hub_without_token_fails_before_any_request(tiny_suite, exported, tmp_path):
    config, _ = suite_with(tiny_suite, tmp_path, target="hub")
    with FakeHub() as hub:
        result = subprocess.run(
            [sys.executable, "-c", _upload_script(config, {4: exported("pythia-pico-palm", 4)}, tmp_path)],
            env=_hub_env(hub, tmp_path, token=None), capture_output=True, text=True, timeout=300,
        )
        assert result.returncode == 2
        assert "HF_TOKEN is not set" in result.stderr
        assert not [r for r in hub.requests if r.path.startswith("/api/models") or r.path == "/api/repos/create"]


def test_hub_errors_never_echo_the_token(tiny_suite, exported, tmp_path):
    _, suite = suite_with(tiny_suite, tmp_path, target="hub")
    with FakeHub() as hub:
        target = HubTarget(private=False, max_retries=0, endpoint=hub.url, token=TOKEN)

        def leaky(*args, **kwargs):  # a server or library message that repeats the token
            raise RuntimeError(f"bad credentials {TOKEN}")

        target.api.model_info = leaky
        with pytest.raises(UploadError) as err:
            upload_checkpoint(suite, "pythia-pico-palm", 4, exported("pythia-pico-palm", 4), target=target)
        assert TOKEN not in str(err.value) and "***" in str(err.value)


class _Response:
    def __init__(self, status: int, headers: dict | None = None) -> None:
        self.status_code, self.headers = status, headers or {}


class _HTTPError(Exception):
    def __init__(self, status: int, headers: dict | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.response = _Response(status, headers)


def test_retry_policy():
    sleeps: list[float] = []
    calls = iter([_HTTPError(503), _HTTPError(429, {"Retry-After": "7"}), ConnectionError("reset"), "ok"])

    def flaky():
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    assert with_retries(flaky, "op", max_retries=5, base_delay=0.5, sleep=sleeps.append) == "ok"
    assert sleeps == [0.5, 7.0, 2.0]  # exponential, except where the server says when

    assert not is_transient(_HTTPError(404)) and not is_transient(_HTTPError(401))
    assert is_transient(_HTTPError(500)) and is_transient(TimeoutError())
    with pytest.raises(_HTTPError):  # a client error is not retried
        with_retries(lambda: (_ for _ in ()).throw(_HTTPError(403)), "op", max_retries=5, sleep=sleeps.append)
    assert len(sleeps) == 3
    with pytest.raises(_HTTPError):  # and a transient one gives up after max_retries
        with_retries(lambda: (_ for _ in ()).throw(_HTTPError(503)), "op", max_retries=2, base_delay=1,
                     sleep=sleeps.append)
    assert sleeps[3:] == [1, 2]


def test_upload_target_none_writes_a_receipt_only(tiny_suite, exported, tmp_path):
    _, suite = suite_with(tiny_suite, tmp_path, target="none")
    record = upload_checkpoint(suite, "pythia-pico-palm", 8, exported("pythia-pico-palm", 8),
                               receipt=tmp_path / "r.json")
    assert record["target"] == "none" and json.loads((tmp_path / "r.json").read_text())["step"] == 8


def test_upload_refuses_an_export_of_another_checkpoint(tiny_suite, exported, tmp_path):
    _, suite = suite_with(tiny_suite, tmp_path, target="none")
    with pytest.raises(UploadError, match="expected pythia-pico-palm step 4"):
        upload_checkpoint(suite, "pythia-pico-palm", 4, exported("pythia-pico-palm", 8))
