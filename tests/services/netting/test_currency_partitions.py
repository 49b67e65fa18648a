"""Each currency on its own partition of ``clearing.obligations``, by the reference data's
plan: adding a currency while a worker runs grows the topic and closes the new
currency's cycles on its partition; a published currency is never moved.

The operation this test follows is docs/operations.md, "Adding a currency"."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_services.kafka.clients import admin_client, read_topic
from clearing_services.kafka.topics import OBLIGATIONS_TOPIC
from tests.conftest import REFDATA_FILE
from tests.support.pipeline import clearing, decoded, wait_until, worker

pytestmark = pytest.mark.own_broker
NEW_PARTITION = 5  # beyond the 4 of infra/topics.yaml: the topic must grow


def with_eur(partition: int = NEW_PARTITION) -> dict[str, Any]:
    """The test reference data with EUR added on ``partition``, settled on its own rail."""
    data: dict[str, Any] = yaml.safe_load(REFDATA_FILE.read_text())
    data["version"] = "pipeline-test-eur"
    data["currencies"].append({"code": "EUR", "iso_code": "EUR", "minor_exponent": 2,
                               "name": "Euro", "obligation_partition": partition})  # fmt: skip
    data["rails"].append({"rail_id": "eur-target", "name": "TARGET2 EUR", "currency": "EUR",
                          "decimals": 2, "model": "HUB", "export_format": "ISO20022",
                          "cycle_seconds": 86400})  # fmt: skip
    return data


def published(bootstrap: str, state: Path, data: dict[str, Any]) -> Any:
    path = state / f"refdata-{time.time_ns()}.yaml"
    path.write_text(yaml.safe_dump(data))
    return clearing(bootstrap, state, "refdata", "publish", str(path))


def partitions_of(bootstrap: str, topic: str) -> int:
    metadata = admin_client(bootstrap).list_topics(topic, timeout=30)
    return len(metadata.topics[topic].partitions)


def marker_partition(bootstrap: str, marker_id: str) -> int:
    for record in read_topic(bootstrap, OBLIGATIONS_TOPIC, f"mk-{time.time_ns()}"):
        if marker_id.encode() in record.value:
            return record.partition
    raise AssertionError(f"marker {marker_id} is not on {OBLIGATIONS_TOPIC}")


def closed(bootstrap: str, state: Path, codec: SingleObjectCodec, currency: str) -> str:
    """``clearing cycle close`` for ``currency``; its marker id, once its report is out."""
    done = clearing(bootstrap, state, "cycle", "close", "--currency", currency, "--json")
    assert done.returncode == 0, done.stderr
    marker_id = str(yaml.safe_load(done.stdout)["marker_id"])

    def reported() -> bool:
        reports = decoded(bootstrap, codec, "clearing.cycles", f"cy-{time.time_ns()}")
        return any(r["marker_id"] == marker_id for r in reports)

    wait_until(f"the {currency} cycle of {marker_id}", reported, timeout_seconds=90)
    return marker_id


def test_a_currency_added_while_the_worker_runs_closes_on_its_own_partition(
    bootstrap: str, state: Path, codec: SingleObjectCodec
) -> None:
    assert partitions_of(bootstrap, OBLIGATIONS_TOPIC) == 4
    with worker(bootstrap, state, worker_id="cp1"):
        cnh = closed(bootstrap, state, codec, "CNH")
        done = published(bootstrap, state, with_eur())
        assert done.returncode == 0, done.stderr
        assert partitions_of(bootstrap, OBLIGATIONS_TOPIC) == NEW_PARTITION + 1
        eur = closed(bootstrap, state, codec, "EUR")  # the running worker finds the partition
    assert marker_partition(bootstrap, cnh) == 0
    assert marker_partition(bootstrap, eur) == NEW_PARTITION


def test_a_published_currency_is_never_moved_to_another_partition(
    bootstrap: str, state: Path
) -> None:
    moved = with_eur()
    moved["currencies"][0]["obligation_partition"] = 3  # CNH, published on 0
    done = published(bootstrap, state, moved)
    assert done.returncode != 0
    assert "CNH is on partition 0 of clearing.obligations, the new data moves it to 3" in (
        done.stderr
    )
    shared = with_eur(partition=1)  # USD's
    done = published(bootstrap, state, shared)
    assert done.returncode != 0
    assert "currencies[EUR].obligation_partition: 1 is already USD's" in done.stderr
