"""Test helper: run the CLI with a step callback that signals this process after a given step.

    python -m pythia_repro.testing.step_signal STEP SIGNAL VERB [ARGS...]

e.g. `... 3 TERM train --config S.yaml --model M` sends SIGTERM to the trainer right after it
finishes step 3, as SLURM's warning signal or a kill would arrive. Under `launch`, every rank it
starts runs through this module too, so each rank signals itself. Production code has no such
hook: the trainer only calls `RunOptions.on_step`, which this module sets.
"""

from __future__ import annotations

import os
import signal
import sys

from pythia_repro import cli
from pythia_repro.train import commands, distributed


def main(argv: list[str]) -> int:
    step, name, *rest = argv
    signum = getattr(signal, f"SIG{name.upper()}")
    build_options = commands._run_options

    def with_signal(args):
        options = build_options(args)
        options.on_step = lambda done: os.kill(os.getpid(), signum) if done == int(step) else None
        return options

    commands._run_options = with_signal
    distributed.WORKER = ("-m", "pythia_repro.testing.step_signal", step, name)  # not __name__: "__main__" here
    return cli.main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
