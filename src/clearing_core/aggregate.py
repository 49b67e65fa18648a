"""Pre-aggregation of one ingest micro-batch's obligations (DESIGN section 2).

Why: a cycle's cost (the sends, the netting stage's decode and ledger, the
close) grows with the number of obligations, not with their value. Meter
readings of one contract in one batch all owe the same creditor the same way,
so they become one obligation that says how many events it stands for and
which (``source_event_count`` and ``source_digest``, the SHA-256 over the
sorted event ids); the ids themselves are kept in the ingest stage's audit
log (``SeenEvents``).

Exactness: each event's exact price is ``amount_minor * PRICE_SCALE +
remainder_ppm`` millionths. An aggregate sums the exact prices and splits the
sum into whole units and a remainder once; the netting stage carries the
remainder per carry key as before. So the total billed is the same as without
aggregation, to the millionth. A sum that would leave int64 is not an error of
the input: the aggregate is closed there and a new one opened.

Determinism: the output depends only on the batch, in input order: groups
appear in the order their first event appears.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from clearing_core import ids
from clearing_core.money import INT64_MAX
from clearing_core.refdata.models import PRICE_SCALE

# What must be equal for two obligations to become one: who pays whom, in what,
# with which priority, from which stream and contract, and with which carry key
# (remainders are carried per key, so one aggregate never mixes two keys).
AggregateKey = tuple[str, str, str, str, int, str | None, str | None]
Keyed = tuple[bytes, dict[str, Any]]  # (Kafka key, Obligation record)


@dataclass(slots=True)
class _Group:
    first: Mapping[str, Any]
    key: bytes
    event_ids: list[str] = field(default_factory=list)
    exact: int = 0  # millionths of a minor unit
    event_time: Any = None


def aggregate_key(record: Mapping[str, Any]) -> AggregateKey:
    return (
        str(record["currency"]), str(record["debtor_id"]), str(record["creditor_id"]),
        str(record["source"]), int(record.get("priority", 0)), record.get("contract_id"),
        record.get("carry_key"),
    )  # fmt: skip


def exact_of(record: Mapping[str, Any]) -> int:
    """An obligation's exact amount in millionths of a minor unit."""
    return int(record["amount_minor"]) * PRICE_SCALE + int(record.get("remainder_ppm") or 0)


@dataclass(frozen=True)
class Aggregation:
    """The aggregated obligations, and which one carries each source event."""

    records: list[Keyed]
    obligation_of: dict[str, str]  # event id -> obligation id


def aggregate(obligations: Sequence[Keyed], event_ids: Sequence[str]) -> Aggregation:
    """One obligation per aggregate key (and per int64's worth of value), in the
    order of first appearance. ``event_ids[i]`` is the source event of
    ``obligations[i]``, which must stand for exactly one event."""
    if len(obligations) != len(event_ids):
        raise ValueError(f"{len(obligations)} obligations but {len(event_ids)} event ids")
    records: list[Keyed] = []
    obligation_of: dict[str, str] = {}
    for group in _groups(obligations, event_ids):
        key, record = _record(group)
        records.append((key, record))
        for event_id in group.event_ids:
            obligation_of[event_id] = str(record["obligation_id"])
    return Aggregation(records, obligation_of)


def _groups(obligations: Sequence[Keyed], event_ids: Sequence[str]) -> Iterator[_Group]:
    open_: dict[AggregateKey, _Group] = {}
    order: list[_Group] = []
    for (kafka_key, record), event_id in zip(obligations, event_ids, strict=True):
        if int(record.get("source_event_count", 1)) != 1:
            raise ValueError(f"{record['obligation_id']} is already an aggregate")
        exact = exact_of(record)
        key = aggregate_key(record)
        group = open_.get(key)
        if group is None or group.exact > INT64_MAX - exact:
            group = open_[key] = _Group(record, kafka_key)
            order.append(group)
        group.event_ids.append(event_id)
        group.exact += exact
        time = record["event_time"]
        if group.event_time is None or time > group.event_time:
            group.event_time = time
    return iter(order)


def _record(group: _Group) -> Keyed:
    """The group's obligation: the first record itself for a group of one (its id is
    the event's, as without aggregation), else the summed aggregate."""
    if len(group.event_ids) == 1:
        return group.key, dict(group.first)
    amount, remainder = divmod(group.exact, PRICE_SCALE)
    source = str(group.first["source"])
    record = dict(group.first)
    record.update(
        obligation_id=ids.obligation_id(source, group.event_ids),
        amount_minor=amount, remainder_ppm=remainder,
        source_event_count=len(group.event_ids),
        source_digest=ids.source_digest(group.event_ids),
        event_time=group.event_time,
    )  # fmt: skip
    return group.key, record
