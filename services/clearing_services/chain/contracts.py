"""The Vyper contracts of the token rails, compiled when needed and cached.

Why compile here: no bytecode is checked in (DESIGN §11), so what runs on the
chain is always what ``contracts/`` says. A compile takes about half a second per
contract; the result is cached under the cache folder, keyed by the source's hash
and the compiler's version, so tests and restarts reuse it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import vyper
from vyper.compiler import compile_code

from clearing_services.settings import bundled_dir

TOKEN = "StableToken"
SETTLEMENT = "Settlement"
OUTPUTS = ["abi", "bytecode", "bytecode_runtime"]


@dataclass(frozen=True)
class Compiled:
    """One contract: its ABI, the creation code and the code it leaves on chain."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: bytes
    runtime: bytes


def contracts_dir() -> Path:
    """``contracts/`` of the checkout, or the copy packed into the wheel."""
    return bundled_dir("contracts")


def compiled(name: str, cache_dir: Path) -> Compiled:
    """The contract ``contracts/<name>.vy``, from the cache when its source is unchanged."""
    source = (contracts_dir() / f"{name}.vy").read_text()
    key = hashlib.sha256(f"{vyper.__version__}\n{source}".encode()).hexdigest()[:24]
    cached = cache_dir / "vyper" / f"{name}-{key}.json"
    try:
        out = orjson.loads(cached.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        out = compile_code(source, output_formats=OUTPUTS, contract_path=f"{name}.vy")
        _write_atomically(cached, orjson.dumps(out))
    return Compiled(
        name=name,
        abi=out["abi"],
        bytecode=bytes.fromhex(out["bytecode"].removeprefix("0x")),
        runtime=bytes.fromhex(out["bytecode_runtime"].removeprefix("0x")),
    )


def _write_atomically(path: Path, data: bytes) -> None:
    """Concurrent compiles (two workers starting) each write whole files, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "wb") as out:
        out.write(data)
    os.replace(temporary, path)
