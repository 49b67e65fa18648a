"""Session fixtures: one real Kafka broker for the whole run.

Order of choice (DESIGN section 8): ``KAFKA_BOOTSTRAP`` if set; else the local
jar-based KRaft node on free ports with its data in a temporary folder; else a
testcontainers Kafka where a Docker engine answers. A missing broker fails
the run (it is never skipped).
"""

from __future__ import annotations

import importlib
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.encoding.schemas import SchemaCatalog
from clearing_services.broker.distribution import BrokerUnavailableError
from clearing_services.broker.health import wait_until_healthy
from clearing_services.broker.select import local_broker
from clearing_services.settings import load_settings, tune_process_environment

REPO = Path(__file__).resolve().parents[1]
tune_process_environment(os.environ)
# authlib (pulled in by confluent_kafka.schema_registry) installs an "always" filter for its
# deprecation warnings when first imported; importing it here, outside pytest's per-test
# warning capture, lets the filter in pyproject.toml take precedence.
importlib.import_module("authlib.deprecate")
# No per-example deadline: it is a wall-clock assertion, and on a loaded 2-core machine
# the first example of a test may also load or compile a Numba kernel (a cold cache
# in a clean clone made one such test flaky: 285 ms on its first call, 1 ms after).
settings.register_profile("clearing", deadline=None)
settings.load_profile("clearing")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def catalog() -> SchemaCatalog:
    return SchemaCatalog.load()


@pytest.fixture(scope="session")
def codec(catalog: SchemaCatalog) -> SingleObjectCodec:
    return SingleObjectCodec(catalog)


def _local_or_container(tmp: Path) -> Iterator[str]:
    node, local_error = None, None
    for attempt in range(3):  # a free port can be taken between choosing and binding it
        candidate = local_broker(
            load_settings(), home=tmp / f"kafka-{attempt}", port=free_port(),
            controller_port=free_port(), heap_mb=512,
        )  # fmt: skip
        try:
            status, _ = candidate.start()
        except BrokerUnavailableError as exc:
            local_error = exc
            continue
        node = candidate
        break
    if node is None:
        from clearing_services.broker.containers import docker_available, kafka_container

        if not docker_available():
            pytest.fail(f"no Kafka broker for the tests: {local_error}", pytrace=False)
        with kafka_container() as container:
            yield str(container.get_bootstrap_server())
        return
    try:
        yield status.bootstrap
    finally:
        node.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a real, healthy broker shared by the whole session."""
    env = os.environ.get("KAFKA_BOOTSTRAP")
    if env:
        if wait_until_healthy(env, timeout_seconds=30) is None:
            pytest.fail(f"KAFKA_BOOTSTRAP={env} does not answer", pytrace=False)
        yield env
        return
    yield from _local_or_container(tmp_path_factory.mktemp("broker"))


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic and group names of one test."""
    return uuid.uuid4().hex[:10]
