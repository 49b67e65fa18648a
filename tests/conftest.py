"""Session fixtures: one real Kafka broker for the whole run, and the broker marks.

Order of choice (DESIGN section 8): ``KAFKA_BOOTSTRAP`` if set; else the local
jar-based KRaft node on free ports with its data in a temporary folder; else a
testcontainers Kafka where a Docker engine answers. A missing broker fails
the run (it is never skipped).

A module marked ``own_broker`` gets a broker of its own instead (its docstring says
why: most write the contract's fixed topic names and consumer groups). A test that
asks for a broker through a fixture is marked ``broker`` here, so
``make test-fast`` (``-m "not broker and not slow"``) leaves it out; a test without
that mark that starts a broker all the same fails at once.
"""

from __future__ import annotations

import importlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.encoding.schemas import SchemaCatalog
from clearing_services.broker.distribution import BrokerUnavailableError
from clearing_services.broker.health import wait_until_healthy
from clearing_services.broker.local import LocalBroker
from clearing_services.settings import tune_process_environment
from tests.support.brokers import start_local_broker
from tests.support.pipeline import REFDATA_FILE, clearing, stop_chain

REPO = Path(__file__).resolve().parents[1]
# The fixtures that give a test a broker; a test whose fixtures include one is a broker test.
BROKER_FIXTURES = frozenset({"kafka_bootstrap", "own_broker_node", "bootstrap"})
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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "own_broker: the module's tests share a broker of the module's own, "
        "not the session's (the module's docstring says why)",
    )  # fmt: skip


@pytest.hookimpl(tryfirst=True)  # before -m selects: the marks must be there by then
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if BROKER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.broker)


@pytest.fixture(autouse=True)
def _no_broker_unless_marked(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test without the broker mark fails where it would start a broker in this
    process, rather than make the fast run slow and in need of Java."""
    if request.node.get_closest_marker("broker") is not None:
        return
    nodeid = request.node.nodeid

    def refuse(*_args: object, **_kwargs: object) -> None:
        pytest.fail(f"{nodeid} starts a broker but is not marked broker", pytrace=False)

    monkeypatch.setattr(LocalBroker, "start", refuse)


@pytest.fixture(scope="session")
def catalog() -> SchemaCatalog:
    return SchemaCatalog.load()


@pytest.fixture(scope="session")
def codec(catalog: SchemaCatalog) -> SingleObjectCodec:
    return SingleObjectCodec(catalog)


def _local_or_container(tmp: Path) -> Iterator[str]:
    try:
        node = start_local_broker(tmp)
    except BrokerUnavailableError as local_error:
        from clearing_services.broker.containers import docker_available, kafka_container

        if not docker_available():
            pytest.fail(f"no Kafka broker for the tests: {local_error}", pytrace=False)
        with kafka_container() as container:
            yield str(container.get_bootstrap_server())
        return
    try:
        yield node.config.bootstrap
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


def _module_name(request: pytest.FixtureRequest) -> str:
    return str(request.module.__name__).rsplit(".", 1)[-1]


@pytest.fixture(scope="module")
def own_broker_node(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalBroker]:
    """The local node of a module marked ``own_broker``, stopped after its last test."""
    node = start_local_broker(tmp_path_factory.mktemp(f"{_module_name(request)}-broker"))
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def bootstrap(request: pytest.FixtureRequest) -> str:
    """The broker of the module's tests: its own where it is marked ``own_broker``,
    else the session's."""
    if request.node.get_closest_marker("own_broker") is not None:
        node: LocalBroker = request.getfixturevalue("own_broker_node")
        return node.config.bootstrap
    return str(request.getfixturevalue("kafka_bootstrap"))


@pytest.fixture(scope="module")
def refdata_file() -> Path:
    """What ``state`` publishes; a module with reference data of its own overrides it."""
    return REFDATA_FILE


@pytest.fixture(scope="module")
def state(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, bootstrap: str,
    refdata_file: Path,
) -> Iterator[Path]:  # fmt: skip
    """The state folder of the module's workers and commands, ``refdata_file`` published;
    the embedded chain node its workers started is stopped after the module."""
    folder = tmp_path_factory.mktemp(f"{_module_name(request)}-state")
    done = clearing(bootstrap, folder, "refdata", "publish", str(refdata_file))
    assert done.returncode == 0, done.stderr
    try:
        yield folder
    finally:
        stop_chain(folder)


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic and group names of one test."""
    return uuid.uuid4().hex[:10]
