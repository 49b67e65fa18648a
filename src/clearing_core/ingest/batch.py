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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

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
