"""One batch of the ingest stage: the records it takes in, and what its steps hand on.

The stage's steps (``stage.process_batch``) run in two implementations: the fast
lane (``fast_lane/``) takes the plain events in columns, and the events it does
not take go one by one through ``decode``, ``identify``, ``validate`` and
``price``, each of which fills in its part of the event's ``Case``. Both end in
``records`` (the accepted events as ``PricedColumns``, in input order), and the
ingest loop then aggregates them (``aggregate``). The forms passed between the
steps live here, below every step, so that no step imports another to read its
output.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import repeat
from typing import Any, NamedTuple, overload

import numpy as np

from clearing_core.jit import I64


class RawEvent(NamedTuple):
    """A record as the broker gave it. A named tuple: one is made per consumed
    record, and a frozen dataclass costs several times as much to build."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int
    headers: tuple[tuple[str, bytes], ...] = ()  # (name, value), in order


Headers = tuple[tuple[str, bytes], ...]
_new_event = partial(tuple.__new__, RawEvent)  # bound in C: no Python frame per event


class RawBatch(Sequence[RawEvent]):
    """Consumed records as columns, in order: what the ingest stage takes in.

    Why columns: the fast lane reads each field of every record once, in bulk (the
    values to decode, the keys to check, the offsets and times), and the consumer
    fills them straight from its messages. A ``RawEvent`` is made only for a record
    the per-event path or a dead letter needs (indexing or iterating makes them)."""

    __slots__ = ("headers", "keys", "offsets", "partitions", "timestamps_ms", "topics", "values")

    def __init__(
        self, topics: list[str], partitions: list[int], offsets: list[int],
        keys: list[bytes | None], values: list[bytes], timestamps_ms: list[int],
        headers: list[Headers] | None = None,
    ) -> None:  # fmt: skip
        """``headers`` None: no record has any."""
        count = len(values)
        columns = (topics, partitions, offsets, keys, timestamps_ms, headers or values)
        if any(len(column) != count for column in columns):
            raise ValueError(f"RawBatch: columns of {[len(c) for c in columns]} records")
        self.topics, self.partitions, self.offsets = topics, partitions, offsets
        self.keys, self.values, self.timestamps_ms = keys, values, timestamps_ms
        self.headers = headers

    @classmethod
    def of(cls, events: Sequence[RawEvent]) -> RawBatch:
        """``events`` as a batch (itself if it is one)."""
        if isinstance(events, RawBatch):
            return events
        if not events:
            return cls([], [], [], [], [], [])
        *columns, headers = map(list, zip(*events, strict=True))
        return cls._of(columns, headers if any(headers) else None)

    @classmethod
    def _of(cls, columns: Sequence[list[Any]], headers: list[Headers] | None) -> RawBatch:
        """From ``columns()``'s six columns and the headers."""
        topics, partitions, offsets, keys, values, times = columns
        return cls(topics, partitions, offsets, keys, values, times, headers)

    @classmethod
    def concat(cls, parts: Sequence[RawBatch]) -> RawBatch:
        """The parts' records one after the other."""
        if len(parts) == 1:
            return parts[0]
        columns: list[list[Any]] = [[] for _ in range(6)]
        for part in parts:
            for column, more in zip(columns, part.columns(), strict=True):
                column += more
        headers = None
        if any(part.headers is not None for part in parts):
            headers = [h for part in parts for h in (part.headers or [()] * len(part))]
        return cls._of(columns, headers)

    def columns(self) -> tuple[list[Any], ...]:
        """Topics, partitions, offsets, keys, values, times (without the headers)."""
        return (self.topics, self.partitions, self.offsets, self.keys, self.values,
                self.timestamps_ms)  # fmt: skip

    def take(self, rows: Sequence[int]) -> RawBatch:
        """The records at ``rows``, in that order (itself when that is all, in order)."""
        if len(rows) == len(self) and (not rows or (rows[0] == 0 and rows[-1] == len(rows) - 1)):
            return self  # ascending and distinct by the callers: all of them
        picked = [[column[i] for i in rows] for column in self.columns()]
        headers = None if self.headers is None else [self.headers[i] for i in rows]
        return RawBatch._of(picked, headers)

    def __len__(self) -> int:
        return len(self.values)

    @overload
    def __getitem__(self, at: int) -> RawEvent: ...
    @overload
    def __getitem__(self, at: slice) -> RawBatch: ...
    def __getitem__(self, at: int | slice) -> RawEvent | RawBatch:
        if isinstance(at, slice):
            cut = None if self.headers is None else self.headers[at]
            return RawBatch._of([column[at] for column in self.columns()], cut)
        headers = () if self.headers is None else self.headers[at]
        return _new_event((*(column[at] for column in self.columns()), headers))

    def __iter__(self) -> Iterator[RawEvent]:
        headers = repeat((), len(self)) if self.headers is None else self.headers
        return map(_new_event, zip(*self.columns(), headers, strict=True))


# What must be equal for two obligations to become one: who pays whom, in what,
# with which priority, from which stream and contract, and with which carry key
# (remainders are carried per key, so one aggregate never mixes two keys). A
# payment's reference is not in it: with one key per reference, 15% of the events
# (the payments) made most of the obligations. Each payment stays traceable by
# its event id: its obligation's ``source_digest`` covers it, and the seen-id
# record of its partition (``SeenEvents``) names the obligation that carries it.
AggregateKey = tuple[str, str, str, str, int, str | None, str | None]


class Priced(NamedTuple):
    """One accepted event's obligation before aggregation: a tuple, since one is
    made per event; the record itself is built only for what is sent."""

    event_id: str
    key: AggregateKey  # (currency, debtor, creditor, source, priority, contract, carry key)
    exact: int  # quantity x unit price, in millionths of a minor unit
    event_time_ms: int


@dataclass
class PricedColumns:
    """Accepted events, in input order, as columns: the ingest stage's form of a
    list of ``Priced``. Why: an event then costs a few list appends (or none, when
    the fast lane extends the columns by whole runs), and aggregation reads the
    key of each event as a small int, never hashing its 7-tuple."""

    event_ids: list[str] = field(default_factory=list)
    key_ids: list[int] = field(default_factory=list)  # per event: its key in ``keys``
    exact: list[int] = field(default_factory=list)
    time_ms: list[int] = field(default_factory=list)
    keys: list[AggregateKey] = field(default_factory=list)  # distinct, in first use
    _key_index: dict[AggregateKey, int] = field(default_factory=dict, repr=False)

    def key_id(self, key: AggregateKey) -> int:
        found = self._key_index.get(key)
        if found is None:
            found = self._key_index[key] = len(self.keys)
            self.keys.append(key)
        return found

    def append(self, priced: Priced) -> None:
        self.event_ids.append(priced.event_id)
        self.key_ids.append(self.key_id(priced.key))
        self.exact.append(priced.exact)
        self.time_ms.append(priced.event_time_ms)

    def extend(
        self, event_ids: list[str], keys: Sequence[AggregateKey], key_ids: I64,
        exact: list[int], time_ms: list[int],
    ) -> None:  # fmt: skip
        """Events whose keys are ``keys[key_ids[i]]`` (one call for a whole run)."""
        mapped = np.zeros(max(len(keys), 1), np.int64)
        for k in np.unique(key_ids).tolist():  # only the keys the run uses
            mapped[k] = self.key_id(keys[k])
        self.event_ids += event_ids
        self.key_ids += mapped[key_ids].tolist()
        self.exact += exact
        self.time_ms += time_ms

    def __len__(self) -> int:
        return len(self.event_ids)

    @property
    def priced(self) -> list[Priced]:
        keys = self.keys
        columns = zip(self.event_ids, self.key_ids, self.exact, self.time_ms, strict=True)
        return [Priced(e, keys[k], x, t) for e, k, x, t in columns]

    @classmethod
    def of(cls, items: Sequence[Priced]) -> PricedColumns:
        columns = cls()
        for item in items:
            columns.append(item)
        return columns


@dataclass(frozen=True)
class LaneResult:
    """What the fast lane accepted, as columns: per accepted row (ascending) its
    event id, aggregate key (an index into ``keys``), exact price and event time."""

    rows: I64
    event_ids: list[str]
    keys: list[AggregateKey]
    key_ids: I64
    exact: I64
    time_ms: I64

    def priced(self, at: int) -> Priced:
        """The accepted row at position ``at`` (not its event index) as a ``Priced``."""
        key = self.keys[int(self.key_ids[at])]
        return Priced(self.event_ids[at], key, int(self.exact[at]), int(self.time_ms[at]))

    @classmethod
    def concat(cls, parts: Sequence[LaneResult]) -> LaneResult:
        """The parts' rows in one result, in row order."""
        if not parts:
            return NOTHING_TAKEN
        rows = np.concatenate([p.rows for p in parts])
        bases = np.cumsum([0] + [len(p.keys) for p in parts[:-1]])
        key_ids = np.concatenate([p.key_ids + base for p, base in zip(parts, bases, strict=True)])
        order = np.argsort(rows, kind="stable")
        ids = [e for p in parts for e in p.event_ids]
        return cls(rows[order], [ids[i] for i in order.tolist()],
                   [k for p in parts for k in p.keys], key_ids[order],
                   np.concatenate([p.exact for p in parts])[order],
                   np.concatenate([p.time_ms for p in parts])[order])  # fmt: skip


_NONE = np.zeros(0, np.int64)
NOTHING_TAKEN = LaneResult(_NONE, [], [], _NONE, _NONE, _NONE)


@dataclass(frozen=True, slots=True)
class PricedInput:
    """An accepted event reduced to what pricing and netting need (``validate``'s
    verdict on an event it accepts, which ``price`` prices).

    ``amount_minor, remainder_ppm = divmod(quantity * unit_price, 1,000,000)``: meter
    energy in Wh at minor units per MWh, compute units at minor units per million
    units, and payments at ``unit_price = 1,000,000`` (exact; ``carry_key`` empty).
    The netting stage carries the remainders per ``carry_key``.
    """

    source: str  # clearing.ObligationSource: METER, COMPUTE or PAYMENT
    event_id: str
    debtor_id: str
    creditor_id: str
    currency: str
    quantity: int
    unit_price: int
    carry_key: str
    priority: int
    contract_id: str | None  # PPA contract or price book; None for a payment (below)
    event_time_ms: int  # interval end, usage end, or payment reported_at


class Refused(NamedTuple):
    """Why a step refused an event, as its dead letter tells it: the reason code and
    message, the event's id, the currency it would have settled in, and the
    producer whose signature verified (``records.rejected_record``)."""

    reason_code: str
    message: str
    event_id: str | None = None
    currency: str | None = None
    principal: str | None = None


@dataclass(slots=True)
class Case:
    """One event on the per-event path, as far as its steps have taken it: each step
    fills in its part, and passes over an event an earlier step refused.

    ``identified``: decoded, its producer and its key accepted. From there its id
    tells whether it is a duplicate, and that verdict (``records``) comes before any
    refusal of a later step, as it would if the steps stopped there for it."""

    at: int  # its index in the batch
    event: RawEvent
    name: str = ""  # decode: its record type
    record: Mapping[str, Any] = field(default_factory=dict)  # decode
    event_id: str | None = None  # decode, where the record holds a text one
    hint: str | None = None  # decode: the currency it would settle in, for a dead letter
    principal: str | None = None  # identify: the producer whose signature verified
    identified: bool = False  # identify
    checked: PricedInput | None = None  # validate: the facts to price
    priced: Priced | None = None  # price
    refused: Refused | None = None  # the step that refused it, if one did
