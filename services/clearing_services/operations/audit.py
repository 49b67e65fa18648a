"""From events to obligations: which accepted event is carried by which obligation,
read from the ingest stage's audit log (``SeenEvents`` on the
``clearing.ingest.seen.*`` topics) and ``clearing.obligations``, both
read_committed. With pre-aggregation an obligation id no longer names its
event, so this is how the tests and the end-to-end bench check that every
event was counted exactly once, and how an auditor finds an event's obligation."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from clearing_core.encoding.codec import Codec
from clearing_core.encoding.records import Obligation, SeenEvents
from clearing_core.ids import source_digest
from clearing_core.ingest.aggregate import aggregate_key, exact_of
from clearing_core.ingest.batch import AggregateKey
from clearing_services.ingest.seen_store import seen_topic
from clearing_services.kafka.clients import DeliveryError, read_topic
from clearing_services.kafka.topics import EVENT_TOPICS, OBLIGATIONS_TOPIC


@dataclass(frozen=True)
class Coverage:
    obligation_of: dict[str, str]  # accepted event id -> the obligation carrying it (on the log)
    repeated: list[str]  # event ids accepted by more than one committed transaction
    unlogged: set[str]  # obligation ids the audit log names but clearing.obligations lacks
    miscounted: dict[str, str]  # obligation id -> what disagrees with the events naming it
    obligations: dict[str, Obligation]  # every Obligation on the log, by id

    def events(self, *prefixes: str) -> set[str]:
        """The accepted, logged event ids that start with one of ``prefixes``."""
        return {e for e in self.obligation_of if e.startswith(prefixes)}

    def value_by_key(self, event_ids: Iterable[str]) -> dict[AggregateKey, int]:
        """The exact value (millionths) per aggregate key of the obligations that carry
        ``event_ids``; compare with ``value_of`` the obligations priced one by one."""
        carrying = {self.obligation_of[e] for e in event_ids if e in self.obligation_of}
        return value_of(self.obligations[o] for o in carrying)

    def assert_sound(self) -> None:
        assert not self.repeated, f"events accepted twice: {self.repeated[:5]}"
        assert not self.unlogged, f"obligations missing from the log: {sorted(self.unlogged)[:5]}"
        assert not self.miscounted, f"aggregates disagree with their events: {self.miscounted}"


SETTLE_SECONDS_MAX = 60.0
RECHECK_SECONDS = 1.0  # between two reads of the log while events are still unlogged


def coverage(bootstrap: str, codec: Codec, settle_seconds: float = SETTLE_SECONDS_MAX) -> Coverage:
    """The coverage as the log stands, read again (up to ``settle_s``) while the audit
    log names obligations not yet visible: a transaction's commit markers reach its
    partitions one by one, so a reader can see its SeenEvents before its obligations
    (most visibly while a broker restarts). A read held back by a transaction left
    open (``DeliveryError``) is tried again too. What stays unlogged after that is a
    fault."""
    deadline = time.monotonic() + settle_seconds
    while True:
        try:
            found = _read_coverage(bootstrap, codec)
        except DeliveryError:
            if time.monotonic() > deadline:
                raise
            continue
        if not found.unlogged or time.monotonic() > deadline:
            return found
        time.sleep(RECHECK_SECONDS)


def _read_coverage(bootstrap: str, codec: Codec) -> Coverage:
    group = f"audit-{time.time_ns()}"
    named: dict[str, list[str]] = {}  # obligation id -> event ids
    accepted: Counter[str] = Counter()
    for spec in EVENT_TOPICS:
        for record in read_topic(bootstrap, seen_topic(spec.topic), group):
            for event in codec.decode(record.value).as_record(SeenEvents)["events"]:
                accepted[event["event_id"]] += 1
                named.setdefault(event["obligation_id"], []).append(event["event_id"])
    logged: dict[str, Obligation] = {}
    for record in read_topic(bootstrap, OBLIGATIONS_TOPIC, group):
        decoded = codec.decode(record.value)
        if decoded.name == "Obligation":
            obligation = decoded.as_record(Obligation)
            logged[obligation["obligation_id"]] = obligation
    miscounted = {}
    for oid, events in named.items():
        ob = logged.get(oid)
        if ob is None:
            continue
        if ob["source_event_count"] != len(events):
            miscounted[oid] = f"count {ob['source_event_count']} != {len(events)} events"
        elif len(events) > 1 and ob["source_digest"] != source_digest(events):
            miscounted[oid] = "source_digest is not the digest of its events"
    return Coverage(
        obligation_of={e: o for o, events in named.items() if o in logged for e in events},
        repeated=sorted(e for e, n in accepted.items() if n > 1),
        unlogged=set(named) - set(logged),
        miscounted=miscounted,
        obligations=logged,
    )


def value_of(records: Iterable[Obligation]) -> dict[AggregateKey, int]:
    """Exact value in millionths per aggregate key: what pre-aggregation preserves."""
    out: dict[AggregateKey, int] = {}
    for record in records:
        key = aggregate_key(record)
        out[key] = out.get(key, 0) + exact_of(record)
    return out
