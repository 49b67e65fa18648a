"""The core stays pure: importing every module of clearing_core loads no Kafka or
Faust client (DESIGN section 2), and no core module reads the environment."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import clearing_core

FORBIDDEN = ("confluent_kafka", "faust", "aiokafka", "mode")
CORE = Path(clearing_core.__file__).parent


def test_core_imports_no_streaming_client() -> None:
    modules = sorted(m.name for m in pkgutil.walk_packages([str(CORE)], "clearing_core."))
    assert "clearing_core.encoding.codec" in modules
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True
    )
    assert done.stdout.strip() == ""


def test_core_reads_no_environment() -> None:
    offenders = []
    for path in CORE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv"}:
                offenders.append(f"{path.relative_to(CORE)}:{node.lineno}")
    assert offenders == []
