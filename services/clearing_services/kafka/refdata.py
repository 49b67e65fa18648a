"""Reference data on Kafka: published atomically to the compacted ``clearing.refdata.*``
topics, loaded by every worker at start, and followed while it runs.

Why one transaction for a publish: a worker must never see half a new version
(a contract whose participant is not there yet); read_committed readers see
all six topics change at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from pydantic import ValidationError

from clearing_core.encoding.codec import TYPE_BYTES_MAX, Codec, CodecError
from clearing_core.encoding.records import RefdataVersion
from clearing_core.errors import ClearingError, InputError
from clearing_core.refdata import RefdataError, ReferenceData
from clearing_core.refdata.models import Currency, Rail
from clearing_core.refdata.snapshot import REFDATA_TOPICS
from clearing_core.refdata.versions import VERSIONS_TOPIC, refdata_of_version, version_record
from clearing_services.kafka.clients import (
    Record,
    admin_client,
    consumer_config,
    producer_config,
    read_topic,
)
from clearing_services.kafka.settling import watermarks
from clearing_services.kafka.topics import (
    OBLIGATIONS_TOPIC,
    batch_topic_spec,
    create_topics,
    ensure_partitions,
    load_topic_plan,
)
from clearing_services.kafka.waits import CONSUME_WAIT_SECONDS

PUBLISH_SECONDS_MAX = 60.0
VERSION_BYTES_MAX = TYPE_BYTES_MAX["RefdataVersion"]
_log = logging.getLogger("clearing.refdata")
RAILS_TOPIC = REFDATA_TOPICS[Rail.AVRO_NAME]
CURRENCIES_TOPIC = REFDATA_TOPICS["clearing.Currency"]


class NoReferenceDataError(ClearingError):
    """Nothing usable is published on the reference-data topics."""

    reason_code = "NO_REFDATA"


def publish_refdata(bootstrap: str, codec: Codec, refdata: ReferenceData, by: str) -> int:
    """Write every record of a snapshot in one transaction, tombstones for keys the
    topics hold that the snapshot no longer has, and the whole version under its digest
    (``clearing.refdata.versions``). Returns the number of records on the compacted
    topics."""
    current = {(r.record_type, r.key) for r in refdata.to_records()}
    published = _read_all(bootstrap, codec, f"{by}-scan")
    _keep_planned_partitions(published, refdata)
    ensure_partitions(admin_client(bootstrap), OBLIGATIONS_TOPIC, refdata.obligation_partitions)
    stale = [(record_type, key) for record_type, key, _ in published
             if (record_type, key) not in current]  # fmt: skip
    settings: dict[str, str | int | float | bool] = {
        "transactional.id": f"clearing-refdata-{by}",
        "message.max.bytes": VERSION_BYTES_MAX + (1 << 20),
    }
    producer = Producer(producer_config(bootstrap, **settings))
    producer.init_transactions(PUBLISH_SECONDS_MAX)
    producer.begin_transaction()
    failures: list[str] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failures.append(str(err.str()))

    count = 0
    try:
        for record in refdata.to_records():
            value = codec.encode(record.record_type, record.value, topic=record.topic)
            producer.produce(
                record.topic, key=record.key.encode(), value=value, on_delivery=on_delivery
            )
            count += 1
        for record_type, key in stale:
            producer.produce(REFDATA_TOPICS[record_type], key=key.encode(), value=None,
                             on_delivery=on_delivery)  # fmt: skip
        version = version_record(codec, refdata, by, datetime.now(UTC))
        value = codec.encode("RefdataVersion", version, topic=VERSIONS_TOPIC)
        producer.produce(VERSIONS_TOPIC, key=refdata.digest.encode(), value=value,
                         on_delivery=on_delivery)  # fmt: skip
        producer.commit_transaction(PUBLISH_SECONDS_MAX)
    except KafkaException as exc:
        producer.abort_transaction(PUBLISH_SECONDS_MAX)
        why = failures[0] if failures else str(exc)
        raise ClearingError(f"publishing reference data failed, nothing published: {why}") from exc
    return count + len(stale)


def _keep_planned_partitions(published: Iterable[tuple[str, str, Any]],
                             refdata: ReferenceData) -> None:  # fmt: skip
    """A published currency keeps its partition of clearing.obligations: moved, its open
    cycle's obligations would stay behind on the old one while its markers went to
    the new one, and the cycle would close without them."""
    for record_type, code, value in published:
        if record_type != Currency.AVRO_NAME or value is None or code not in refdata.currencies:
            continue
        before, after = value.get("obligation_partition"), refdata.obligation_partition(code)
        if before is not None and before != after:
            raise InputError(
                f"currencies[{code}].obligation_partition: {code} is on partition {before} of "
                f"{OBLIGATIONS_TOPIC}, the new data moves it to {after}; a currency keeps its "
                "partition once published (docs/operations.md, adding a currency)"
            )


def _decoded(codec: Codec, records: Iterable[Record]) -> list[tuple[str, str, Any]]:
    out: list[tuple[str, str, Any]] = []
    for record in records:
        key = (record.key or b"").decode()
        if not record.value:
            out.append(("", key, None))  # tombstone: type resolved by topic below
            continue
        try:
            decoded = codec.decode(record.value)
        except CodecError as exc:
            raise NoReferenceDataError(
                f"{record.topic}@{record.partition}:{record.offset}: unreadable ({exc})"
            ) from exc
        out.append((f"clearing.{decoded.name}", key, decoded.record))
    return out


def _read_all(bootstrap: str, codec: Codec, group: str) -> list[tuple[str, str, Any]]:
    rows: list[tuple[str, str, Any]] = []
    for record_type, topic in REFDATA_TOPICS.items():
        for _, key, value in _decoded(codec, read_topic(bootstrap, topic, group)):
            rows.append((record_type, key, value))
    return rows


def load_refdata_from_topics(bootstrap: str, codec: Codec, group: str) -> ReferenceData:
    """The snapshot the topics hold now (compacted: the latest value of each key)."""
    rows = _read_all(bootstrap, codec, group)
    if not any(value is not None for _, _, value in rows):
        raise NoReferenceDataError(
            "no reference data on the clearing.refdata.* topics: run `clearing refdata publish`"
        )
    try:
        return ReferenceData.from_records(rows, version="topics")
    except RefdataError as exc:
        raise NoReferenceDataError(f"the published reference data is invalid: {exc}") from exc


def load_rails_from_topics(bootstrap: str, codec: Codec, group: str) -> dict[str, Rail]:
    """The rails alone: all a bank's principal may read of the reference data (with
    the currencies), and all it needs to export and answer its batches."""
    latest: dict[str, Any] = {}
    for _, key, value in _decoded(codec, read_topic(bootstrap, RAILS_TOPIC, group)):
        if value is None:
            latest.pop(key, None)
        else:
            latest[key] = value
    try:
        return {key: Rail.model_validate(dict(value)) for key, value in latest.items()}
    except ValidationError as exc:
        first = exc.errors()[0]["msg"]
        raise NoReferenceDataError(f"{RAILS_TOPIC}: an invalid rail: {first}") from None


@dataclass
class RefdataHolder:
    """The current snapshot, swapped whole when a new version is read."""

    current: ReferenceData

    def get(self) -> ReferenceData:
        return self.current


class RefdataFollower:
    """Tails the reference-data topics and swaps the holder's snapshot on change."""

    def __init__(self, bootstrap: str, codec: Codec, holder: RefdataHolder) -> None:
        self.bootstrap = bootstrap
        self.codec = codec
        self.holder = holder
        self.versions_seen = 1

    def run(self, stop: threading.Event) -> None:
        consumer = Consumer(consumer_config(self.bootstrap, "clearing-refdata-follow"))
        try:
            assignment = []
            for topic in REFDATA_TOPICS.values():
                _, high = watermarks(consumer, TopicPartition(topic, 0))
                assignment.append(TopicPartition(topic, 0, high))
            consumer.assign(assignment)
            while not stop.is_set():
                if consumer.consume(1000, timeout=CONSUME_WAIT_SECONDS):
                    self._reload()
        finally:
            consumer.close()

    def _reload(self) -> None:
        try:
            fresh = load_refdata_from_topics(self.bootstrap, self.codec, "clearing-refdata-reload")
        except NoReferenceDataError as exc:
            _log.error("reference data update ignored: %s", exc)
            return
        if fresh.digest != self.holder.current.digest:
            new_rails = set(fresh.rails) - set(self.holder.current.rails)
            if new_rails:  # their batch topics must exist before a cycle settles on them
                template = load_topic_plan().batch_template
                specs = [batch_topic_spec(template, rail) for rail in sorted(new_rails)]
                create_topics(admin_client(self.bootstrap), specs)
            self.holder.current = fresh
            self.versions_seen += 1
            _log.warning("reference data changed: digest %s", fresh.digest[:16])


def load_versions(bootstrap: str, codec: Codec, group: str) -> dict[str, ReferenceData]:
    """Every recorded reference-data version by digest. A record that cannot be read
    is an error naming it: a replay must not silently net a cycle with other data."""
    versions: dict[str, ReferenceData] = {}
    for record in read_topic(bootstrap, VERSIONS_TOPIC, group):
        where = f"{VERSIONS_TOPIC}@{record.partition}:{record.offset}"
        try:
            decoded = codec.decode(record.value)
            if decoded.name != "RefdataVersion":
                raise NoReferenceDataError(f"{where}: a {decoded.name} record")
            version = decoded.as_record(RefdataVersion)
            if version["digest"] not in versions:
                versions[version["digest"]] = refdata_of_version(codec, version)
        except (CodecError, RefdataError) as exc:
            raise NoReferenceDataError(f"{where}: unreadable ({exc})") from exc
    return versions
