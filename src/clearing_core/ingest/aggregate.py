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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from clearing_core import ids
from clearing_core.ingest.batch import AggregateKey, Priced, PricedColumns
from clearing_core.jit import I64, kernel
from clearing_core.money import INT64_MAX
from clearing_core.refdata.models import PRICE_SCALE

Keyed = tuple[bytes, dict[str, Any]]  # (Kafka key, Obligation record)


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
    oid = ids.event_obligation_id(priced.key[3], priced.event_id)
    return _keyed(priced.key, oid, priced.exact, 1, None, priced.event_time_ms)


def _keyed(
    key: AggregateKey, obligation_id: str, exact: int, count: int, digest: str | None,
    time_ms: int,
) -> Keyed:  # fmt: skip
    currency, debtor, creditor, source, priority, contract_id, carry_key = key
    amount, remainder = divmod(exact, PRICE_SCALE)
    return currency.encode(), {
        "obligation_id": obligation_id,
        "debtor_id": debtor, "creditor_id": creditor, "currency": currency,
        "amount_minor": amount, "priority": priority, "source": source,
        "contract_id": contract_id, "source_event_count": count, "source_digest": digest,
        "event_time": datetime.fromtimestamp(time_ms / 1000, tz=UTC),
        "remainder_ppm": remainder, "carry_key": carry_key,
    }  # fmt: skip


@dataclass(frozen=True)
class Aggregation:
    """The aggregated obligations as columns (one entry per obligation), and which
    obligation carries each source event. A group of one is the event's own
    obligation (id ``m:<event id>``); a larger one is ``m:agg:<digest>``."""

    keys: list[AggregateKey]
    obligation_ids: list[str]
    exact: list[int]  # millionths of a minor unit
    counts: list[int]  # source events
    digests: list[str | None]  # over the sorted source event ids; None for one event
    time_ms: list[int]  # the newest source event time
    carriers: list[str]  # per source event, in input order: its obligation's id
    event_ids: list[str]  # the source events, in input order

    @property
    def records(self) -> list[Keyed]:
        """(Kafka key, ``Obligation`` record) per obligation."""
        return [_keyed(*row) for row in zip(self.keys, self.obligation_ids, self.exact,
                                            self.counts, self.digests, self.time_ms,
                                            strict=True)]  # fmt: skip

    def columns(self) -> dict[str, list[Any]]:
        """The ``Obligation`` fields as columns (``event_time`` in ms since the epoch),
        and ``kafka_key``: what the ingest stage writes without a dict per record."""
        keys = self.keys
        split = [divmod(x, PRICE_SCALE) for x in self.exact]
        return {
            "obligation_id": self.obligation_ids, "debtor_id": [k[1] for k in keys],
            "creditor_id": [k[2] for k in keys], "currency": [k[0] for k in keys],
            "amount_minor": [a for a, _ in split], "priority": [k[4] for k in keys],
            "source": [k[3] for k in keys], "contract_id": [k[5] for k in keys],
            "source_event_count": self.counts, "source_digest": self.digests,
            "event_time": self.time_ms, "remainder_ppm": [r for _, r in split],
            "carry_key": [k[6] for k in keys],
        }  # fmt: skip

    @property
    def obligation_of(self) -> dict[str, str]:
        """Event id -> obligation id."""
        return dict(zip(self.event_ids, self.carriers, strict=True))


def aggregate(items: Sequence[Priced]) -> Aggregation:
    """``aggregate_columns`` of a list of priced events."""
    return aggregate_columns([PricedColumns.of(items)])


def aggregate_columns(parts: Sequence[PricedColumns]) -> Aggregation:
    """One obligation per aggregate key (and per int64's worth of value), in the
    order of first appearance over ``parts`` in turn. The grouping and the sums run
    in one kernel over the columns (``_group``); Python builds a record per group."""
    index: dict[AggregateKey, int] = {}
    key_of, exact_parts, time_parts, event_ids = [], [], [], []
    for part in parts:
        mapped = np.array([index.setdefault(k, len(index)) for k in part.keys] or [0], np.int64)
        key_of.append(mapped[np.array(part.key_ids, np.int64)])
        exact_parts.append(_exact_column(part))
        time_parts.append(np.array(part.time_ms, np.int64))
        event_ids += part.event_ids
    keys = list(index)
    exact = np.concatenate(exact_parts) if parts else np.zeros(0, np.int64)
    time_ms = np.concatenate(time_parts) if parts else np.zeros(0, np.int64)
    key_ids = np.concatenate(key_of) if parts else np.zeros(0, np.int64)
    group, sums, newest, counts, firsts = _group(key_ids, exact, time_ms, len(keys))
    order = np.argsort(group, kind="stable").tolist()
    ends = np.cumsum(counts).tolist()
    out = Aggregation([], [], sums.tolist(), counts.tolist(), [], newest.tolist(), [], event_ids)
    key_list = key_ids.tolist()
    for first, count, end in zip(firsts.tolist(), out.counts, ends, strict=True):
        key = keys[key_list[first]]
        out.keys.append(key)
        if count == 1:
            out.obligation_ids.append(ids.event_obligation_id(key[3], event_ids[first]))
            out.digests.append(None)
            continue
        digest = ids.source_digest([event_ids[j] for j in order[end - count : end]])
        out.obligation_ids.append(ids.aggregate_id(key[3], digest))
        out.digests.append(digest)
    out.carriers.extend([out.obligation_ids[g] for g in group.tolist()])
    return out


def _exact_column(part: PricedColumns) -> I64:
    """The exact amounts as int64; one outside 0..int64 is an error of the caller."""
    if part.exact and not 0 <= min(part.exact) <= max(part.exact) <= INT64_MAX:
        bad = next(i for i, x in enumerate(part.exact) if not 0 <= x <= INT64_MAX)
        raise ValueError(f"{part.event_ids[bad]}: exact amount {part.exact[bad]} outside 0..int64")
    return np.array(part.exact, np.int64)


@kernel
def _group(
    key_of: I64, exact: I64, time_ms: I64, keys: int
) -> tuple[I64, I64, I64, I64, I64]:  # fmt: skip
    """Per row its aggregate; per aggregate its exact sum, newest event time, row
    count and first row. Each key has one open aggregate; a row whose amount would
    take it past int64 opens the key's next one."""
    rows = len(key_of)
    open_of = np.full(keys, -1, np.int64)
    group = np.empty(rows, np.int64)
    sums, newest = np.zeros(rows, np.int64), np.zeros(rows, np.int64)
    counts, firsts = np.zeros(rows, np.int64), np.zeros(rows, np.int64)
    made = 0
    for row in range(rows):
        g = open_of[key_of[row]]
        if g < 0 or sums[g] > INT64_MAX - exact[row]:
            g = made
            made += 1
            open_of[key_of[row]], firsts[g], newest[g] = g, row, time_ms[row]
        group[row] = g
        sums[g] += exact[row]
        counts[g] += 1
        newest[g] = max(newest[g], time_ms[row])
    return group, sums[:made], newest[:made], counts[:made], firsts[:made]
