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
from datetime import UTC, datetime
from typing import Any, NamedTuple

from clearing_core import ids
from clearing_core.money import INT64_MAX
from clearing_core.refdata.models import PRICE_SCALE

# What must be equal for two obligations to become one: who pays whom, in what,
# with which priority, from which stream and contract, and with which carry key
# (remainders are carried per key, so one aggregate never mixes two keys).
AggregateKey = tuple[str, str, str, str, int, str | None, str | None]
Keyed = tuple[bytes, dict[str, Any]]  # (Kafka key, Obligation record)


class Priced(NamedTuple):
    """One accepted event's obligation before aggregation: a tuple, since one is
    made per event; the record itself is built only for what is sent."""

    event_id: str
    key: AggregateKey  # (currency, debtor, creditor, source, priority, contract, carry key)
    exact: int  # quantity x unit price, in millionths of a minor unit
    event_time_ms: int


@dataclass(slots=True)
class _Group:
    first: Priced
    event_ids: list[str] = field(default_factory=list)
    exact: int = 0  # millionths of a minor unit
    event_time_ms: int = 0


def aggregate_key(record: Mapping[str, Any]) -> AggregateKey:
    return (
        str(record["currency"]), str(record["debtor_id"]), str(record["creditor_id"]),
        str(record["source"]), int(record.get("priority", 0)), record.get("contract_id"),
        record.get("carry_key"),
    )  # fmt: skip


def exact_of(record: Mapping[str, Any]) -> int:
    """An obligation's exact amount in millionths of a minor unit."""
    return int(record["amount_minor"]) * PRICE_SCALE + int(record.get("remainder_ppm") or 0)


def obligation_of(priced: Priced) -> Keyed:
    """The obligation of one event, keyed by its currency: id ``m:<event id>``, the
    exact price split into whole minor units and a remainder in millionths."""
    currency, debtor, creditor, source, priority, contract_id, carry_key = priced.key
    amount, remainder = divmod(priced.exact, PRICE_SCALE)
    return currency.encode(), {
        "obligation_id": ids.event_obligation_id(source, priced.event_id),
        "debtor_id": debtor, "creditor_id": creditor, "currency": currency,
        "amount_minor": amount, "priority": priority, "source": source,
        "contract_id": contract_id, "source_event_count": 1, "source_digest": None,
        "event_time": datetime.fromtimestamp(priced.event_time_ms / 1000, tz=UTC),
        "remainder_ppm": remainder, "carry_key": carry_key,
    }  # fmt: skip


@dataclass(frozen=True)
class Aggregation:
    """The aggregated obligations, and which one carries each source event."""

    records: list[Keyed]
    obligation_of: dict[str, str]  # event id -> obligation id


def aggregate(items: Sequence[Priced]) -> Aggregation:
    """One obligation per aggregate key (and per int64's worth of value), in the
    order of first appearance."""
    records: list[Keyed] = []
    carried_by: dict[str, str] = {}
    for group in _groups(items):
        key, record = _record(group)
        records.append((key, record))
        for event_id in group.event_ids:
            carried_by[event_id] = str(record["obligation_id"])
    return Aggregation(records, carried_by)


def _groups(items: Sequence[Priced]) -> Iterator[_Group]:
    open_: dict[AggregateKey, _Group] = {}
    order: list[_Group] = []
    for item in items:
        exact = item.exact
        if not 0 <= exact <= INT64_MAX:
            raise ValueError(f"{item.event_id}: exact amount {exact} outside 0..int64")
        group = open_.get(item.key)
        if group is None or group.exact > INT64_MAX - exact:
            group = open_[item.key] = _Group(item, event_time_ms=item.event_time_ms)
            order.append(group)
        group.event_ids.append(item.event_id)
        group.exact += exact
        if item.event_time_ms > group.event_time_ms:
            group.event_time_ms = item.event_time_ms
    return iter(order)


def _record(group: _Group) -> Keyed:
    """The group's obligation: the first event's own for a group of one (its id is
    the event's, as without aggregation), else the summed aggregate."""
    key, record = obligation_of(group.first)
    if len(group.event_ids) == 1:
        return key, record
    amount, remainder = divmod(group.exact, PRICE_SCALE)
    digest = ids.source_digest(group.event_ids)
    record.update(
        obligation_id=ids.aggregate_id(str(record["source"]), digest),
        amount_minor=amount, remainder_ppm=remainder,
        source_event_count=len(group.event_ids), source_digest=digest,
        event_time=datetime.fromtimestamp(group.event_time_ms / 1000, tz=UTC),
    )  # fmt: skip
    return key, record
