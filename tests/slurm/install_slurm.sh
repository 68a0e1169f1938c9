#!/usr/bin/env bash
# Install the SLURM binaries (Debian slurm-wlm) and munge for the local single-node test cluster.
# Idempotent and quick when already installed: apt runs only when a binary is missing.
# The cluster itself is configured and started per test session by tests/slurm/harness.py;
# nothing here enables or starts a system service.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"

need=()
for bin in slurmctld slurmd sbatch srun salloc squeue sinfo scontrol; do
    if ! command -v "$bin" >/dev/null 2>&1; then need=(slurm-wlm); break; fi
done
if ! command -v munged >/dev/null 2>&1 || ! command -v mungekey >/dev/null 2>&1; then need+=(munge); fi

if [ "${#need[@]}" -eq 0 ]; then
    echo "install_slurm: slurm-wlm and munge already installed ($(slurmctld -V 2>/dev/null || echo "version unknown"))"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "install_slurm: need root (or sudo) to install: ${need[*]}" >&2
        exit 1
    fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_slurm: apt-get not found; install SLURM (slurmctld, slurmd, client tools) and munge" \
         "with your package manager" >&2
    exit 1
fi

echo "install_slurm: installing slurm-wlm munge"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# policy-rc.d 101: packages must not start services at install (containers have no init system;
# the test harness starts its own daemons with its own config).
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod +x "$policy"
    created_policy=1
fi
status=0
$SUDO apt-get install -y -q --no-install-recommends slurm-wlm munge || status=$?
if [ "$created_policy" -eq 1 ]; then $SUDO rm -f "$policy"; fi
[ "$status" -eq 0 ] || exit "$status"
echo "install_slurm: installed $(slurmctld -V)"
