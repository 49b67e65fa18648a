"""The Docker path: a Kafka container through testcontainers, where an engine runs.

Used only when neither ``KAFKA_BOOTSTRAP`` nor the jar-based local broker is
available; this machine has no Docker engine, so the jar path is the default.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

KAFKA_IMAGE = "apache/kafka:4.1.1"
DOCKER_PING_SECONDS = 3  # a Docker engine that answers does so at once


def docker_available() -> bool:
    """Whether a Docker engine answers (the client alone is not enough)."""
    try:
        import docker  # testcontainers depends on it

        client = docker.from_env(timeout=DOCKER_PING_SECONDS)
        client.ping()
        return True
    except Exception:  # no socket, no permission, no engine
        return False


def kafka_container() -> AbstractContextManager[Any]:
    """A started-on-enter Kafka container in KRaft mode; ``get_bootstrap_server()``."""
    from testcontainers.kafka import KafkaContainer

    return KafkaContainer(KAFKA_IMAGE).with_kraft()
