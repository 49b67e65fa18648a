"""The documented exit codes of the installed ``clearing`` process against a real broker
(README "Exit status"): ``broker status`` 0 running, 1 unhealthy, 3 stopped; ``replay``
1 when a batch on a rail's topic is not what re-netting the log gives; ``lag`` 0 whatever
the statuses, an unknown group one line and 2.

A broker of this module's own: the replay test writes a forged batch on a contract
topic (clearing.settlement.batches.cnh-cips), which must stay clear of other tests."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from clearing_core.codec import SingleObjectCodec
from clearing_core.cycle import CurrencyLedger, CycleContext, RailInfo
from clearing_core.settlement import RailSpec
from clearing_services.kafka_io import (
    admin_client,
    consumer_config,
    produce_all,
    producer_config,
)
from clearing_services.topics import TopicSpec, batch_topic, create_topics
from tests.conftest import free_port
from tests.support.installed import Run, clearing
from tests.support.pipeline import REFDATA_FILE, env, own_broker

pytestmark = pytest.mark.broker
FORGED_RAIL = "cnh-cips"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(bootstrap, home) of a local broker started for this module."""
    home = tmp_path_factory.mktemp("exit-codes") / "kafka"
    with own_broker(home) as bootstrap:
        yield bootstrap, home


def run(bootstrap: str, state: Path, *args: str) -> Run:
    return clearing(*args, env=env(bootstrap, state))


def test_broker_status_running_unhealthy_stopped(node: tuple[str, Path], tmp_path: Path) -> None:
    bootstrap, home = node
    where = ["--home", str(home), "--port", bootstrap.rsplit(":", 1)[1]]
    running = run(bootstrap, tmp_path, "broker", "status", "--json", *where)
    assert running.returncode == 0, running.stderr
    status = json.loads(running.stdout)
    assert status["state"] == "running"
    os.kill(status["pid"], signal.SIGSTOP)  # alive, but answers nothing
    try:
        unhealthy = run(bootstrap, tmp_path, "broker", "status", "--json", *where)
    finally:
        os.kill(status["pid"], signal.SIGCONT)
    assert unhealthy.returncode == 1, unhealthy.stderr
    assert json.loads(unhealthy.stdout)["state"] == "unhealthy"
    nowhere = ["--home", str(tmp_path / "none"), "--port", str(free_port())]
    stopped = run(bootstrap, tmp_path, "broker", "status", *nowhere)
    assert stopped.returncode == 3, stopped.stderr
    assert "broker stopped" in stopped.stderr
    again = run(bootstrap, tmp_path, "broker", "status", *where)
    assert again.returncode == 0, again.stderr  # resumed


def forged_batch(codec: SingleObjectCodec) -> tuple[str, bytes]:
    """A well-formed SettlementBatch of CNH's first cycle on the forged rail, which no
    cycle of the log made: (batch id, its bytes)."""
    ledger = CurrencyLedger("CNH")
    ledger.add({"obligation_id": "forged-1", "debtor_id": "DC-SHENZHEN-01",
                "creditor_id": "SOLAR-QINGHAI-07", "currency": "CNH",
                "amount_minor": 1_000_000, "priority": 0, "source": "PAYMENT"})  # fmt: skip
    rails = {FORGED_RAIL: RailInfo(RailSpec(FORGED_RAIL, "hub", 2, 2), "ISO20022", None)}
    context = CycleContext(
        currency="CNH", iso_currency="CNY", currency_exponent=2, rails=rails,
        rail_of={"DC-SHENZHEN-01": FORGED_RAIL, "SOLAR-QINGHAI-07": FORGED_RAIL},
        cap_minor={}, identities={}, refdata_digest="forged",
    )  # fmt: skip
    marker = {"marker_id": "forged", "currency": "CNH", "reason": "MANUAL",
              "requested_by": "test", "requested_at": datetime.now(UTC)}  # fmt: skip
    (batch,) = ledger.close(marker, datetime.now(UTC), context).batches
    assert batch["cycle_seq"] == 1
    return batch["batch_id"], codec.encode("SettlementBatch", batch, topic=batch_topic(FORGED_RAIL))


def test_replay_exits_1_when_a_batch_is_not_reproduced(
    node: tuple[str, Path], tmp_path: Path, codec: SingleObjectCodec
) -> None:
    bootstrap, _ = node
    published = run(bootstrap, tmp_path, "refdata", "publish", str(REFDATA_FILE))
    assert published.returncode == 0, published.stderr
    closed = run(bootstrap, tmp_path, "cycle", "close", "--currency", "CNH")
    assert closed.returncode == 0, closed.stderr
    clean = run(bootstrap, tmp_path, "replay", "--json")  # CNH's cycle 1: nothing to settle
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert json.loads(clean.stdout)["cycles"] == 1

    batch_id, value = forged_batch(codec)
    produce_all(Producer(producer_config(bootstrap)), batch_topic(FORGED_RAIL),
                [(batch_id.encode(), value)])  # fmt: skip
    forged = run(bootstrap, tmp_path, "replay", "--json")
    assert forged.returncode == 1, forged.stdout + forged.stderr
    report = json.loads(forged.stdout)
    assert report["ok"] is False
    assert batch_id in forged.stdout
    told = run(bootstrap, tmp_path, "replay")
    assert told.returncode == 1, told.stderr
    assert told.stdout == ""


def test_lag_exits_0_whatever_the_status_and_2_for_an_unknown_group(
    node: tuple[str, Path], tmp_path: Path, unique: str
) -> None:
    bootstrap, _ = node
    topic, group = f"exit-lag-{unique}", f"exit-lag-group-{unique}"
    create_topics(admin_client(bootstrap), [TopicSpec(topic, 1, 1)])
    produce_all(Producer(producer_config(bootstrap)), topic, [(None, b"%d" % i) for i in range(4)])
    consumer = Consumer(consumer_config(bootstrap, group))
    try:  # committed 1 of 4, and no member left: the partition has STOPped
        consumer.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
    finally:
        consumer.close()
    stopped = run(bootstrap, tmp_path, "lag", "--group", group, "--json", "--samples", "3",
                  "--interval", "0.2")  # fmt: skip
    assert stopped.returncode == 0, stopped.stderr
    (report,) = json.loads(stopped.stdout)["groups"]
    assert (report["status"], report["partitions"][0]["status"]) == ("ERR", "STOP")

    unknown = run(bootstrap, tmp_path, "lag", "--group", f"nobody-{unique}", "--json")
    assert (unknown.returncode, unknown.stdout) == (2, "")
    assert unknown.stderr == f"error: consumer group 'nobody-{unique}' not found\n"
