"""Coverage of the kernels as plain Python: numba compiles them, so a normal
coverage run cannot see inside; with ``NUMBA_DISABLE_JIT=1`` the same tests
run the kernels' Python source line by line. The inner run is a subprocess
(the variable must be set before numba is imported) and is guarded by an
environment variable so it never starts itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.core.netting.conftest import REPO

KERNEL_MODULES = (
    "kernels.py",
    "kernels_parallel.py",
    "instructions.py",
    "liquidity_kernels.py",
    "liquidity_search.py",
    "liquidity_resolve.py",
)
KERNEL_LINES_MIN = 0.90


def test_kernels_covered_without_jit(tmp_path: Path) -> None:
    # The inner run deselects this file (-k "not nojit") and the tests that need
    # compiled code (-m "not jit_only"), so it never starts itself.
    report = tmp_path / "coverage.json"
    env = os.environ | {"NUMBA_DISABLE_JIT": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/core/netting",
            "-q",
            "-x",
            "-p",
            "no:cacheprovider",
            "-k",
            "not milp and not cli and not nojit",
            "-m",
            "not jit_only",
            "--cov=clearing_core.netting",
            f"--cov-report=json:{report}",
            f"--basetemp={tmp_path / 'inner'}",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    files = json.loads(report.read_text())["files"]
    covered = {Path(name).name: data["summary"] for name, data in files.items()}
    for module in KERNEL_MODULES:
        summary = covered[module]
        share = summary["covered_lines"] / summary["num_statements"]
        assert share >= KERNEL_LINES_MIN, f"{module}: {share:.1%} of lines covered without JIT"
