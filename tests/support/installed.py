"""The installed ``clearing`` entry point as a process: exit codes and output as an
operator's shell sees them (not click's test runner, not ``python -m``)."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

CLEARING = Path(sys.executable).with_name("clearing")  # beside the venv's python


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def clearing(*args: str, env: dict[str, str], timeout_seconds: float = 180) -> Run:
    """Run ``clearing ARGS`` to its end; ``seconds`` is its wall time."""
    t0 = time.monotonic()
    done = subprocess.run(
        [str(CLEARING), *args], capture_output=True, text=True, env=env, timeout=timeout_seconds,
        check=False,
    )  # fmt: skip
    return Run(done.returncode, done.stdout, done.stderr, time.monotonic() - t0)
