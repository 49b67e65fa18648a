"""Is a broker really there? A TCP connect, then a real Kafka metadata request."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from confluent_kafka.admin import AdminClient

_SILENT = logging.getLogger("clearing.rdkafka.probe")
_SILENT.addHandler(logging.NullHandler())
_SILENT.propagate = False


@dataclass(frozen=True)
class ClusterInfo:
    """What a metadata response says about the cluster."""

    bootstrap: str
    cluster_id: str
    broker_ids: tuple[int, ...]
    topic_count: int


def port_open(host: str, port: int, timeout_seconds: float = 0.5) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_seconds):
            return True
    except OSError:
        return False


def _split(bootstrap: str) -> tuple[str, int]:
    first = bootstrap.split(",")[0].strip()
    if "://" in first:
        first = first.split("://", 1)[1]
    host, _, port = first.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def probe(
    bootstrap: str, timeout_seconds: float = 3.0, security: Mapping[str, str] | None = None
) -> ClusterInfo | None:
    """Metadata from the cluster, or None when it does not answer in time.

    ``security``: librdkafka properties of an authenticated connection (SASL_SSL);
    a secure broker answers nothing without them."""
    host, port = _split(bootstrap)
    if not port_open(host, port, timeout_seconds=min(timeout_seconds, 1.0)):
        return None
    config: dict[str, str | int | float | bool] = {"bootstrap.servers": bootstrap, "log_level": 0}
    config.update(security or {})
    admin = AdminClient(config, logger=_SILENT)
    try:
        metadata = admin.list_topics(timeout=timeout_seconds)
    except Exception:  # KafkaException on timeout or transport failure
        return None
    if not metadata.brokers:
        return None
    return ClusterInfo(
        bootstrap=bootstrap,
        cluster_id=str(metadata.cluster_id),
        broker_ids=tuple(sorted(metadata.brokers)),
        topic_count=len([t for t in metadata.topics if not t.startswith("__")]),
    )


def wait_until_healthy(
    bootstrap: str,
    timeout_seconds: float,
    poll_seconds: float = 0.25,
    security: Mapping[str, str] | None = None,
    gone: Callable[[], bool] | None = None,
) -> ClusterInfo | None:
    """Poll ``probe`` until it answers or the time is up. ``gone``: whether the process
    that was to answer has exited; then no answer will come, and waiting out the rest
    of ``timeout_s`` (90 s for a broker whose port was taken) only delays the error."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        left = min(2.0, max(0.1, deadline - time.monotonic()))
        info = probe(bootstrap, timeout_seconds=left, security=security)
        if info is not None or time.monotonic() >= deadline or (gone is not None and gone()):
            return info
        time.sleep(poll_seconds)
