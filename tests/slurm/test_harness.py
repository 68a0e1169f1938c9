"""The harness fails loudly: missing binaries name the install script, a broken start shows the logs."""

from __future__ import annotations

import pytest


def test_missing_binaries_fail_with_install_hint(slurm_harness, monkeypatch, tmp_path_factory):
    monkeypatch.setattr(slurm_harness, "BINARIES", (*slurm_harness.BINARIES, "no-such-slurm-binary"))
    assert "no-such-slurm-binary" in slurm_harness.missing_binaries()
    with pytest.raises(pytest.fail.Exception, match="install_slurm.sh"):
        next(slurm_harness.session_cluster(tmp_path_factory))
    with pytest.raises(slurm_harness.SlurmUnavailable, match="install_slurm.sh"):
        slurm_harness.SlurmCluster(tmp_path_factory.mktemp("nobin")).start()


@pytest.mark.slurm
def test_broken_cluster_fails_with_daemon_logs(slurm_harness, monkeypatch, tmp_path):
    if slurm_harness.missing_binaries():
        pytest.fail(slurm_harness.INSTALL_HINT)
    cluster = slurm_harness.SlurmCluster(tmp_path / "broken")
    write = cluster.write_config

    def write_broken():
        write()
        cluster.conf.write_text(cluster.conf.read_text() + "NoSuchSlurmOption=1\n")

    monkeypatch.setattr(cluster, "write_config", write_broken)
    with pytest.raises(slurm_harness.SlurmStartError) as err:
        cluster.start(timeout=30)
    msg = str(err.value)
    assert "slurmctld" in msg and "NoSuchSlurmOption" in msg and "==> " in msg
    # everything it started is stopped again
    assert not cluster.state_file.exists()
    assert not _munged_alive(cluster)


def _munged_alive(cluster) -> bool:
    pid_file = cluster.root / "munge" / "munged.pid"
    if not pid_file.exists():
        return False
    try:
        pid = int(pid_file.read_text().strip())
    except ValueError:
        return False
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
