"""``clearing chain start|stop|status``: the embedded chain node as a local process.

Like the local broker: detached in a session of its own, its state and log under
one home folder (``$CLEARING_STATE_DIR/chain``), a pid file naming what was
started, and health meaning "answers eth_chainId", not "a process exists".
"""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from clearing_core.errors import InputError
from clearing_services.pids import recorded_pid, terminate

START_SECONDS_MAX = 60.0
STOP_SECONDS_MAX = 15.0
HEALTH_POLL_SECONDS = 0.2
PROBE_TIMEOUT_SECONDS = 2.0
SERVER_MODULE = "clearing_services.chain.server"


class ChainUnavailableError(InputError):
    """The chain node cannot be reached or started."""


@dataclass(frozen=True)
class ChainStatus:
    state: str  # running | stopped | unhealthy
    url: str
    pid: int | None
    home: str
    chain_id: int | None = None
    block_number: int | None = None


def probe(url: str, timeout_seconds: float = PROBE_TIMEOUT_SECONDS) -> tuple[int, int] | None:
    """(chain id, block number) if a JSON-RPC node answers at ``url``, else None."""
    body = [{"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
            {"jsonrpc": "2.0", "id": 2, "method": "eth_blockNumber", "params": []}]  # fmt: skip
    try:
        answers = httpx.post(url, json=body, timeout=timeout_seconds).json()
        by_id = {a["id"]: int(a["result"], 16) for a in answers}
        return by_id[1], by_id[2]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None


class LocalChain:
    """Start, stop and inspect the embedded chain node kept under ``home``."""

    def __init__(self, home: Path, port: int, host: str = "127.0.0.1") -> None:
        self.home = home
        self.port = port
        self.host = host
        self._child: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.home / "chain.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "chain.log"

    def _recorded_pid(self) -> int | None:
        return recorded_pid(self.pid_file, SERVER_MODULE, str(self.home))

    def status(self) -> ChainStatus:
        """running (ours answers), stopped, unhealthy (ours does not answer), or
        foreign (something else answers on the port: another home's node, another tool)."""
        pid = self._recorded_pid()
        answer = probe(self.url)
        if answer is None:
            state = "stopped" if pid is None else "unhealthy"
            return ChainStatus(state, self.url, pid, str(self.home))
        return ChainStatus("running" if pid else "foreign", self.url, pid, str(self.home), *answer)

    def start(self) -> tuple[ChainStatus, bool]:
        """Start the node unless one answers already; (status, started by us)."""
        self.home.mkdir(parents=True, exist_ok=True)
        with _start_lock(self.home):
            current = self.status()
            if current.state == "running":
                return current, False
            if current.state == "foreign":
                raise ChainUnavailableError(
                    f"another JSON-RPC node answers on port {self.port} (chain "
                    f"{current.chain_id}), not the embedded chain of {self.home}: stop it, or "
                    "set CLEARING_CHAIN_PORT to a free port"
                )
            if current.pid is not None:
                terminate(current.pid, None, STOP_SECONDS_MAX)
            return self._spawn(), True

    def _spawn(self) -> ChainStatus:
        command = [sys.executable, "-m", SERVER_MODULE, "--home", str(self.home),
                   "--host", self.host, "--port", str(self.port)]  # fmt: skip
        with self.log_file.open("ab") as out:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        self._child = process
        self.pid_file.write_text(json.dumps({"pid": process.pid, "url": self.url}) + "\n")
        deadline = time.monotonic() + START_SECONDS_MAX
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            if probe(self.url) is not None:
                return self.status()
            time.sleep(HEALTH_POLL_SECONDS)
        exited = process.poll()
        self.stop()
        why = f"exited with {exited}" if exited is not None else "did not answer in time"
        raise ChainUnavailableError(f"the embedded chain {why}; see {self.log_file}")

    def stop(self) -> bool:
        """SIGTERM, then SIGKILL; True if a node was running."""
        pid = self._recorded_pid()
        self.pid_file.unlink(missing_ok=True)
        if pid is None:
            return False
        terminate(pid, self._child, STOP_SECONDS_MAX)
        self._child = None
        return True


@contextmanager
def _start_lock(home: Path) -> Iterator[None]:
    """One starter at a time: the demo, a worker and a test may all ask at once."""
    with (home / "start.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
