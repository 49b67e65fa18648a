"""One frozen settings object, built once at start from the environment.

Why: the core takes configuration as arguments and never reads globals; the
services read the environment exactly here, so a test or a worker can see at a
glance what it runs with.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BROKER_HOST = "127.0.0.1"
DEFAULT_BROKER_PORT = 9092
DEFAULT_CONTROLLER_PORT = 9093
DEFAULT_BROKER_HEAP_MB = 768  # enough for the demo and tests; small beside the workers on 2 cores
DEFAULT_METRICS_PORT = 9464  # Prometheus /metrics of a worker; 0 turns it off


def package_root() -> Path:
    """The directory holding ``clearing_services`` (``services/`` in the working tree)."""
    return Path(__file__).resolve().parent


def project_root() -> Path | None:
    """The repository root when running from a checkout (editable install), else None."""
    candidate = package_root().parents[1]
    if (candidate / "pyproject.toml").is_file() and (candidate / "infra").is_dir():
        return candidate
    return None


def infra_dir() -> Path:
    """``infra/`` of the checkout, or the copy packed into the wheel."""
    packaged = package_root() / "_infra"
    if packaged.is_dir():
        return packaged
    root = project_root()
    assert root is not None, "neither a checkout nor a wheel with _infra"
    return root / "infra"


@dataclass(frozen=True)
class Settings:
    """Everything a command or worker needs to know about its surroundings."""

    bootstrap_servers: str | None
    schema_registry_url: str | None
    cache_dir: Path
    state_dir: Path
    broker_host: str
    broker_port: int
    controller_port: int
    broker_heap_mb: int
    store_url: str
    worker_id: str
    metrics_port: int
    ci: bool

    @property
    def local_bootstrap(self) -> str:
        return f"{self.broker_host}:{self.broker_port}"

    @property
    def broker_home(self) -> Path:
        return self.state_dir / "kafka"

    def bootstrap(self) -> str:
        """``KAFKA_BOOTSTRAP`` if set, else the local broker's address."""
        return self.bootstrap_servers or self.local_bootstrap


def tune_process_environment(environ: MutableMapping[str, str]) -> None:
    """Process-wide defaults set by the entry points (the CLI, the benchmarks, the test
    session) before any parallel kernel runs; a library never changes its process's
    environment.

    OMP_WAIT_POLICY=PASSIVE: GNU OpenMP (numba's "omp" threading layer) spins at the
    end of each parallel region waiting for its threads. When another process holds a
    core, the spinning thread and a descheduled worker share the other one: a 10M-
    obligation netting batch then took 40-56 ms instead of 23 ms serially, and a 1M
    batch 40 ms instead of 2 ms. Passive waiting degrades to about the serial time and
    costs 0.2-0.5 ms per launch on a quiet machine. An explicit setting wins, and
    libgomp reads it when it loads, so it must be set before the first launch.
    """
    if "GOMP_SPINCOUNT" not in environ:
        environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        from clearing_core.errors import InputError

        raise InputError(f"{name}={raw!r} is not an integer") from None


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from an environment mapping (``os.environ`` by default)."""
    env = os.environ if env is None else env
    root = project_root()
    default_cache = root / ".cache" if root else Path.home() / ".cache" / "clearing-house"
    default_state = root / ".run" if root else Path.home() / ".local" / "state" / "clearing-house"
    return Settings(
        bootstrap_servers=env.get("KAFKA_BOOTSTRAP") or None,
        schema_registry_url=env.get("SCHEMA_REGISTRY_URL") or None,
        cache_dir=Path(env.get("CLEARING_CACHE_DIR") or default_cache),
        state_dir=Path(env.get("CLEARING_STATE_DIR") or default_state),
        broker_host=env.get("CLEARING_BROKER_HOST") or DEFAULT_BROKER_HOST,
        broker_port=_int(env, "CLEARING_BROKER_PORT", DEFAULT_BROKER_PORT),
        controller_port=_int(env, "CLEARING_CONTROLLER_PORT", DEFAULT_CONTROLLER_PORT),
        broker_heap_mb=_int(env, "CLEARING_BROKER_HEAP_MB", DEFAULT_BROKER_HEAP_MB),
        store_url=env.get("CLEARING_STORE") or "rocksdb://",
        worker_id=env.get("CLEARING_WORKER_ID") or f"{socket.gethostname()}-{os.getpid()}",
        metrics_port=_int(env, "CLEARING_METRICS_PORT", DEFAULT_METRICS_PORT),
        ci=env.get("CI", "").lower() == "true",
    )
