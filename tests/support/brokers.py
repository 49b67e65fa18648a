"""Local brokers for the tests: one way to start a node on free ports, used by the
session's shared broker, a module's own (tests/conftest.py) and the chaos run."""

from __future__ import annotations

import socket
from pathlib import Path

from clearing_services.broker.distribution import BrokerUnavailableError
from clearing_services.broker.local import LocalBroker
from clearing_services.broker.select import local_broker
from clearing_services.settings import load_settings

STARTS_MAX = 3  # a free port can be taken between choosing and binding it
HEAP_MB = 512  # several nodes may run at once on a 2-core CI machine
PORT_TRIES_MAX = 50
PORT_LAST = 65_535


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> int:
    """A base port with ``count`` consecutive ports free now (a local cluster's)."""
    for _ in range(PORT_TRIES_MAX):
        base = free_port()
        if base + count > PORT_LAST:
            continue
        try:
            for port in range(base, base + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise OSError(f"no {count} consecutive free ports in {PORT_TRIES_MAX} tries")


def new_local_broker(home: Path) -> LocalBroker:
    """A node (not started) with its data under ``home``, on ports free now."""
    return local_broker(load_settings(), home=home, port=free_port(),
                        controller_port=free_port(), heap_mb=HEAP_MB)  # fmt: skip


def start_local_broker(folder: Path) -> LocalBroker:
    """A running node with its data in a new folder under ``folder`` (one per try);
    the last try's error where none starts."""
    error = BrokerUnavailableError("no start tried")
    for attempt in range(STARTS_MAX):
        node = new_local_broker(folder / f"kafka-{attempt}")
        try:
            node.start()
        except BrokerUnavailableError as exc:
            error = exc
            continue
        return node
    raise error
