"""What every client is built with: librdkafka's lines go to one logger, at debug level
only where that logger takes debug lines, and the connection profile is the
environment's, whatever the order in which the process set things up."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.encoding.schemas import SchemaCatalog
from clearing_services.kafka.clients import (
    RDKAFKA_DEBUG,
    RDKAFKA_ERRORS,
    RDKAFKA_LOGGER,
    admin_client,
    consumer_config,
    producer_config,
    show_rdkafka_logs,
)
from clearing_services.settings import load_settings
from clearing_services.settlement.acks_agent import Runtime, build_app

SECURE = {
    "CLEARING_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "CLEARING_KAFKA_SASL_USERNAME": "BANK-A",
    "CLEARING_KAFKA_SASL_PASSWORD": "secret",
}


@pytest.fixture(autouse=True)
def logger_level() -> Iterator[None]:
    before = RDKAFKA_LOGGER.level
    yield
    RDKAFKA_LOGGER.setLevel(before)


def test_librdkafka_debug_lines_only_where_the_logger_takes_them() -> None:
    for level, expected in ((logging.DEBUG, RDKAFKA_DEBUG), (logging.INFO, RDKAFKA_ERRORS),
                            (logging.ERROR, RDKAFKA_ERRORS), (None, RDKAFKA_ERRORS)):  # fmt: skip
        show_rdkafka_logs(level)
        assert producer_config("b:1")["log_level"] == expected, level
        assert consumer_config("b:1", "g")["logger"] is RDKAFKA_LOGGER
    show_rdkafka_logs(None)
    assert not RDKAFKA_LOGGER.isEnabledFor(logging.CRITICAL)


def test_every_client_takes_the_profile_of_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in SECURE:
        monkeypatch.delenv(name, raising=False)
    assert "security.protocol" not in consumer_config("b:1", "g")
    for name, value in SECURE.items():
        monkeypatch.setenv(name, value)
    assert consumer_config("b:1", "g")["sasl.username"] == "BANK-A"
    assert producer_config("b:1", **{"transactional.id": "t"})["sasl.password"] == "secret"
    admin_client("127.0.0.1:1")  # builds with the profile (librdkafka checks the keys)


def test_every_producer_waits_for_the_in_sync_replicas_and_is_idempotent(
    tmp_path: Path,
) -> None:
    """DESIGN section 12: acks=all with idempotence, plain or transactional; the Faust
    app (the acks agent) asks for all replicas too and writes nothing through its own
    producer: no tables, no leader topic; its records go through a transactional
    producer of ours (``Sender``)."""
    for config in (producer_config("b:1"), producer_config("b:1", **{"transactional.id": "t"})):
        assert (config["acks"], config["enable.idempotence"]) == ("all", True)
    app = build_app(load_settings({"CLEARING_STATE_DIR": str(tmp_path)}),
                    Runtime(SingleObjectCodec(SchemaCatalog.load()), None, None, None),  # type: ignore[arg-type]
                    roles=set())  # fmt: skip
    assert (app.conf.producer_acks, app.conf.topic_disable_leader) == (-1, True)
    assert (app.conf.table_standby_replicas, list(app.tables)) == (0, [])
