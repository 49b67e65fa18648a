"""The ingest stage's fast lane: plain, valid events checked and priced in columns.

Why: the per-event path (decode to a dict, then one rule after another in
Python) costs about 30 µs an event; the raw consumer reads one in 3 µs. Most
events are plain: the current writer schema, printable ASCII ids, no
signature headers, parties and contracts that exist and may trade. For those,
everything that depends on the strings (reference-data lookups, who may
report what, accounts) is the same for every event with the same reporter,
contract, meter, provider, customer, book, sku, payer, payee, kind and
currency; those fields sit back to back in the encoding, so their bytes name
a *profile* that is checked once and cached (payments, whose profiles are
mostly new, are checked by parts instead: ``fast_lane_payments``). What is
left per event (times,
quantities, capacity, tariff band, the price) runs in Numba kernels over the
decoded columns.

The lane only ever accepts. A row it is not sure about, for any reason, goes
to the per-event path, which decides it exactly as before; so the rejection
reasons and messages are unchanged, and the differential tests compare both
paths on the bad-input corpus and on random batches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import islice
from operator import itemgetter
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from clearing_core.encoding.avro_rows import STRING, RowPlan, Rows, decode_rows, pack, plan_of
from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.ingest.aggregate import AggregateKey, Priced
from clearing_core.ingest.envelope import EVENT_KEY_FIELDS
from clearing_core.ingest.fast_lane_kernels import (
    COMPUTE,
    METER,
    PAYMENT,
    _keys_match,
    _price,
    span_groups,
)
from clearing_core.ingest.fast_lane_payments import payment_profiles
from clearing_core.ingest.lane_forms import LaneForms
from clearing_core.ingest.validate import (
    EVENT_ID_LENGTH_MAX,
    ID_LENGTH_MAX,
    TEXT_LENGTH_MAX,
    ValidationLimits,
)
from clearing_core.jit import I64
from clearing_core.money import INT64_MAX
from clearing_core.refdata import ReferenceData

if TYPE_CHECKING:
    from clearing_core.ingest.stage import RawEvent

# Cached profiles per event type; that type's cache starts again past its bound.
# Meter and usage profiles are bounded by the reference data (contracts x meters;
# books x skus x customers), so the caches hold them all: at 20,000 the 20,215 usage
# profiles of the bench's reference data overflowed it again and again, and a quarter
# of all usage events made one (about 650 bytes each: 65,536 is at most about 43 MB).
# Payments are checked by parts, uncached (``fast_lane_payments``): their profiles are
# mostly new (60k in 100k generated payments), and a cache of them only grew.
PROFILES_MAX = {"MeterReading": 65_536, "ComputeUsage": 65_536}
# The fields whose bytes name a profile, after the event id, in schema order.
PROFILE_FIELDS = {
    "MeterReading": ("reporter_id", "contract_id", "meter_id"),
    "ComputeUsage": ("reporter_id", "provider_id", "customer_id", "price_book_id", "sku"),
    "Payment": ("reporter_id", "payer_id", "payee_id", "kind", "currency"),
}
OPTIONAL_TEXT = {"ComputeUsage": "model", "Payment": "reference"}
_TIMES = {"MeterReading": (METER, ("interval_start", "interval_end")),
          "ComputeUsage": (COMPUTE, ("usage_start", "usage_end")),
          "Payment": (PAYMENT, ("reported_at", "reported_at"))}  # fmt: skip
_QUANTITY = {"MeterReading": "energy_wh", "ComputeUsage": "quantity", "Payment": "amount_minor"}
_INT64_MIN = -(2**63)
_TOPIC, _KEY, _VALUE = itemgetter(0), itemgetter(3), itemgetter(4)  # of a RawEvent
_TIMESTAMP, _HEADERS = itemgetter(5), itemgetter(6)
_NO_KEY: AggregateKey = ("", "", "", "", 0, None, None)  # of a profile no accepted row has


class Profile(NamedTuple):
    key: AggregateKey  # a payment's contract_id (its reference) is filled per event
    params: tuple[int, ...]


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
            return _EMPTY
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
_EMPTY = LaneResult(_NONE, [], [], _NONE, _NONE, _NONE)


class FastLane:
    """Row plans of the event types and a cache of profiles per reference data."""

    def __init__(self, codec: SingleObjectCodec) -> None:
        self.codec = codec
        self.plans: dict[str, RowPlan] = {}
        for name, fields in PROFILE_FIELDS.items():
            plan = plan_of(codec, name)
            if plan is not None and plan.fields[: len(fields) + 1] == ("event_id", *fields):
                self.plans[name] = plan
        # the canonical forms (``clearing_core.encoding.canonical``) of the rows it accepts: where
        # ``own_forms`` (every event of the current schemas today) the rows themselves
        self.forms = LaneForms(codec, self.plans)
        self.own_forms = self.forms.own
        self._refdata: ReferenceData | None = None
        self._profiles: dict[str, dict[bytes, Profile | None]] = {}

    def accept(
        self, events: Sequence[RawEvent], refdata: ReferenceData,
        expected_type: Mapping[str, str], limits: ValidationLimits, keys_must_match: bool,
    ) -> LaneResult:  # fmt: skip
        """The events the fast lane accepted; the per-event path decides the others."""
        if refdata.policy.require_signed_events:
            return _EMPTY
        if refdata is not self._refdata:
            self._refdata, self._profiles = refdata, {}
        chosen = self._chosen(events, expected_type)
        parts = []
        for name, rows in chosen.items():
            picked = [events[i] for i in rows]
            found = self._accept_type(name, picked, refdata, limits, keys_must_match)
            parts.append(replace(found, rows=np.array(rows, np.int64)[found.rows]))
        return parts[0] if len(parts) == 1 else LaneResult.concat(parts)

    def _chosen(
        self, events: Sequence[RawEvent], expected_type: Mapping[str, str]
    ) -> dict[str, list[int]]:
        """The rows of each event type the lane reads: those without headers on a
        topic of a type it has a plan for (a batch of one topic: no loop per event)."""
        topics = set(map(_TOPIC, events))
        if len(topics) == 1 and not any(map(_HEADERS, events)):
            name = expected_type.get(topics.pop())
            return {name: list(range(len(events)))} if name in self.plans else {}
        chosen: dict[str, list[int]] = {}
        for i, event in enumerate(events):
            name = expected_type.get(event.topic)
            if name in self.plans and not event.headers:
                chosen.setdefault(name, []).append(i)
        return chosen

    def _accept_type(
        self, name: str, events: Sequence[RawEvent], refdata: ReferenceData,
        limits: ValidationLimits, keys_must_match: bool,
    ) -> LaneResult:  # fmt: skip
        plan = self.plans[name]
        data, buffer, starts, ends = pack(list(map(_VALUE, events)))
        rows = decode_rows(plan, buffer, starts, ends)
        ok = rows.ok & (ends - starts <= self.codec.record_bytes_max)
        ok &= _lengths_ok(plan, rows, OPTIONAL_TEXT.get(name))
        keys_given = list(map(_KEY, events))
        if None in keys_given:
            keys_given = [k or b"" for k in keys_given]
        _, keys, key_starts, key_ends = pack(keys_given)
        field = plan.index(EVENT_KEY_FIELDS[name])
        _keys_match(ok, keys, key_starts, key_ends, buffer, rows.str_offset[:, field],
                    rows.str_length[:, field], keys_must_match)  # fmt: skip
        text = data.decode("latin-1")  # one character per byte: the lane's strings are ASCII
        if name == "Payment":  # by parts, uncached: payment profiles are mostly new
            profile, params, found = payment_profiles(plan, rows, ok, buffer, text, refdata)
            keyed: list[Profile | None] = [Profile(*p) for p in found]
        else:
            profile, params, keyed = self._profiles_of(name, plan, rows, ok, data, buffer, text,
                                                       refdata)  # fmt: skip
        now_ms = np.fromiter(map(_TIMESTAMP, events), np.int64, len(events))
        exact, time_ms = np.zeros(len(events), np.int64), np.zeros(len(events), np.int64)
        number = rows.number
        column = {f: number[:, plan.index(f)] for f in plan.fields}
        which, times = _TIMES[name]
        start, end = column[times[0]], column[times[1]]
        _price(which, ok, profile, params, start, end, column["reported_at"],
               column[_QUANTITY[name]], now_ms, _limits(name, limits), exact, time_ms)  # fmt: skip
        return _accepted(name, plan, rows, ok, text, keyed, profile, exact, time_ms)

    def _profiles_of(
        self, name: str, plan: RowPlan, rows: Rows, ok: np.ndarray, data: bytes,
        buffer: np.ndarray, text: str, refdata: ReferenceData,
    ) -> tuple[np.ndarray, np.ndarray, list[Profile | None]]:  # fmt: skip
        """Per row the index of its profile in ``keyed`` (-1: none), and the
        profiles' parameters as rows of one int64 matrix. Rows are grouped by a hash
        of their profile bytes in a kernel, and checked byte for byte against the
        first row of their group; Python sees each distinct profile once."""
        last = len(PROFILE_FIELDS[name])
        begin = rows.str_offset[:, 0] + rows.str_length[:, 0]
        end = rows.str_offset[:, last] + rows.str_length[:, last]
        good, firsts, inverse, same = span_groups(buffer, begin, end, ok)
        keyed = self._profiles_for(name, plan, rows, firsts, begin, end, data, text, refdata)
        profile = np.full(len(ok), -1, np.int64)
        gone = np.array([p is None for p in keyed] + [False], np.bool_)
        profile[good] = np.where(same & ~gone[inverse], inverse, -1)
        width = max([len(p.params) for p in keyed if p is not None] or [1])
        empty = (0,) * width
        padded = [empty if p is None else p.params + empty[len(p.params) :] for p in keyed]
        params = np.array(padded or [empty], np.int64)  # one row per profile, zero-padded
        return profile, params, keyed

    def _profiles_for(
        self, name: str, plan: RowPlan, rows: Rows, firsts: np.ndarray, begin: np.ndarray,
        end: np.ndarray, data: bytes, text: str, refdata: ReferenceData,
    ) -> list[Profile | None]:  # fmt: skip
        """The profile of each row of ``firsts`` (one row per distinct profile), from the
        cache or made, the new ones together: their texts are cut column by column, and
        the cache keeps what it can below its ``PROFILES_MAX`` (it starts again when full).
        Why together: one at a time, a new profile's texts cost more than its checks."""
        cache = self._profiles.setdefault(name, {})
        combos = [data[a:b] for a, b in zip(begin[firsts].tolist(), end[firsts].tolist(),
                                            strict=True)]  # fmt: skip
        missing = [at for at, combo in enumerate(combos) if combo not in cache]
        fields = PROFILE_FIELDS[name]
        columns = [_texts(plan, rows, firsts[missing], f, text) for f in fields]
        maker = _MAKERS[name]
        made = {combos[at]: maker(dict(zip(fields, texts, strict=True)), refdata)
                for at, texts in zip(missing, zip(*columns, strict=True), strict=True)}  # fmt: skip
        keyed = [made[combo] if combo in made else cache[combo] for combo in combos]
        bound = PROFILES_MAX[name]
        if len(cache) + len(made) > bound:
            cache.clear()
        cache.update(islice(made.items(), bound - len(cache)))
        return keyed


def _limits(name: str, limits: ValidationLimits) -> np.ndarray:
    span = {"MeterReading": limits.max_meter_interval_ms,
            "ComputeUsage": limits.max_usage_window_ms}.get(name, 0)  # fmt: skip
    return np.array([span, limits.max_age_ms, limits.max_future_skew_ms], np.int64)


def _lengths_ok(plan: RowPlan, rows: Rows, optional: str | None) -> np.ndarray:
    """Required strings non-empty and within their limits; an optional text within its."""
    ok = np.ones(len(rows.ok), np.bool_)
    for f, field in enumerate(plan.fields):
        length = rows.str_length[:, f]
        if field == optional:
            ok &= length <= TEXT_LENGTH_MAX
        elif plan.kinds[f] == STRING:
            top = EVENT_ID_LENGTH_MAX if field == "event_id" else ID_LENGTH_MAX
            ok &= (length >= 1) & (length <= top)
    return ok


def _texts(plan: RowPlan, rows: Rows, picked: np.ndarray, field: str, text: str) -> list[str]:
    """The text of ``field`` in each of the rows ``picked`` (``text``: the batch's
    buffer decoded as Latin-1, one character per byte, so offsets carry over)."""
    f = plan.index(field)
    if field in plan.enum_symbols:
        symbols = plan.enum_symbols[field]
        return [symbols[k] for k in rows.number[picked, f].tolist()]
    return _cut(text, rows.str_offset[picked, f], rows.str_length[picked, f])


def _cut(text: str, starts: np.ndarray, lengths: np.ndarray) -> list[str]:
    """``text[start : start + length]`` for each pair, with no Python frame per slice."""
    return list(map(text.__getitem__, map(slice, starts.tolist(), (starts + lengths).tolist())))


def _accepted(
    name: str, plan: RowPlan, rows: Rows, ok: np.ndarray, text: str,
    keyed: list[Profile | None], profile: np.ndarray, exact: np.ndarray, time_ms: np.ndarray,
) -> LaneResult:  # fmt: skip
    """The accepted rows as columns: a meter reading's or a usage event's aggregate key
    is its profile's; a payment's also names its reference (``text``: as in ``_texts``)."""
    good = np.flatnonzero(ok)
    event_ids = _cut(text, rows.str_offset[good, 0], rows.str_length[good, 0])
    profiles = profile[good]
    if name != "Payment":
        keys = [p.key if p is not None else _NO_KEY for p in keyed]
        return LaneResult(good, event_ids, keys, profiles, exact[good], time_ms[good])
    reference = plan.index("reference")
    ref_start = rows.str_offset[good, reference].tolist()
    ref_length = rows.str_length[good, reference].tolist()
    local: dict[tuple[int, str | None], int] = {}
    key_ids = [
        local.setdefault((p, text[a : a + n] if n >= 0 else None), len(local))
        for p, a, n in zip(profiles.tolist(), ref_start, ref_length, strict=True)
    ]
    keys = []
    for p, ref in local:
        found = keyed[p]
        assert found is not None
        keys.append((*found.key[:5], ref, None))
    return LaneResult(good, event_ids, keys, np.array(key_ids, np.int64), exact[good],
                      time_ms[good])  # fmt: skip


def _active(refdata: ReferenceData, *participant_ids: str) -> bool:
    found = [refdata.participants.get(p) for p in participant_ids]
    return all(p is not None and p.active for p in found)


def _meter_profile(text: Mapping[str, str], refdata: ReferenceData) -> Profile | None:
    reporter, contract_id = text["reporter_id"], text["contract_id"]
    contract = refdata.contracts.get(contract_id)
    metered = refdata.contract_for_meter(text["meter_id"])
    if contract is None or metered is None or metered.contract_id != contract_id:
        return None
    if reporter not in (contract.seller_id, contract.buyer_id):
        return None
    if not _active(refdata, reporter, contract.seller_id, contract.buyer_id):
        return None
    bands = [(b.start_minute, b.end_minute, b.tariff_minor_per_mwh) for b in contract.tou_bands]
    params = (
        -1 if contract.capacity_kw is None else contract.capacity_kw,
        _INT64_MIN if contract.valid_from is None else contract.valid_from,
        INT64_MAX if contract.valid_to is None else contract.valid_to,
        contract.max_tariff_minor_per_mwh(), contract.utc_offset_minutes,
        contract.tariff_minor_per_mwh, len(bands), *(v for band in bands for v in band),
    )  # fmt: skip
    key = (contract.currency, contract.buyer_id, contract.seller_id, "METER", contract.priority,
           contract_id, f"ppa:{contract_id}")  # fmt: skip
    return Profile(key, params)


def _compute_profile(text: Mapping[str, str], refdata: ReferenceData) -> Profile | None:
    reporter, provider, customer = text["reporter_id"], text["provider_id"], text["customer_id"]
    book_id = text["price_book_id"]
    book = refdata.price_books.get(book_id)
    if book is None or book.provider_id != provider or reporter != provider:
        return None
    if customer == provider or not _active(refdata, provider, customer):
        return None
    entry = refdata.price_entry(book_id, text["sku"])
    if entry is None or not refdata.book_lists_customer(book_id, customer):
        return None
    if refdata.account(customer, book.currency) is None:
        return None
    key = (book.currency, customer, provider, "COMPUTE", book.priority, book_id,
           f"book:{book_id}:{customer}")  # fmt: skip
    return Profile(key, (entry.price_minor_per_million, entry.max_quantity_per_event))


_MAKERS = {"MeterReading": _meter_profile, "ComputeUsage": _compute_profile}
