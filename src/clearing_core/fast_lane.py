"""The ingest stage's fast lane: plain, valid events checked and priced in columns.

Why: the per-event path (decode to a dict, then one rule after another in
Python) costs about 30 µs an event; the raw consumer reads one in 3 µs. Most
events are plain: the current writer schema, printable ASCII ids, no
signature headers, parties and contracts that exist and may trade. For those,
everything that depends on the strings (reference-data lookups, who may
report what, accounts) is the same for every event with the same reporter,
contract, meter, provider, customer, book, sku, payer, payee, kind and
currency; those fields sit back to back in the encoding, so their bytes name
a *profile* that is checked once and cached. What is left per event (times,
quantities, capacity, tariff band, the price) runs in Numba kernels over the
decoded columns.

The lane only ever accepts. A row it is not sure about, for any reason, goes
to the per-event path, which decides it exactly as before; so the rejection
reasons and messages are unchanged, and the differential tests compare both
paths on the bad-input corpus and on random batches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from clearing_core.aggregate import AggregateKey, Priced
from clearing_core.avro_rows import STRING, RowPlan, Rows, decode_rows, pack, plan_of
from clearing_core.codec import SingleObjectCodec
from clearing_core.fast_lane_kernels import COMPUTE, METER, PAYMENT, _keys_match, _price
from clearing_core.input_checks import EVENT_KEY_FIELDS
from clearing_core.money import INT64_MAX
from clearing_core.refdata import ReferenceData
from clearing_core.refdata.models import PaymentKind
from clearing_core.validation import (
    EVENT_ID_LENGTH_MAX,
    ID_LENGTH_MAX,
    TEXT_LENGTH_MAX,
    ValidationLimits,
)

if TYPE_CHECKING:
    from clearing_core.ingest import RawEvent

# Cached profiles per event type; that type's cache starts again past this. Why
# small: payments name a payer, a payee, a kind and a currency, so most payment
# profiles are new (60k in 100k generated payments) and a large cache only grew the
# worker (10 MB a minute in a soak); meter and compute profiles stay cached.
PROFILES_MAX = 20_000
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


class Profile(NamedTuple):
    key: AggregateKey  # a payment's contract_id (its reference) is filled per event
    params: tuple[int, ...]


class FastLane:
    """Row plans of the event types and a cache of profiles per reference data."""

    def __init__(self, codec: SingleObjectCodec) -> None:
        self.codec = codec
        self.plans: dict[str, RowPlan] = {}
        for name, fields in PROFILE_FIELDS.items():
            plan = plan_of(codec, name)
            if plan is not None and plan.fields[: len(fields) + 1] == ("event_id", *fields):
                self.plans[name] = plan
        self._refdata: ReferenceData | None = None
        self._profiles: dict[str, dict[bytes, Profile | None]] = {}

    def accept(
        self, events: Sequence[RawEvent], refdata: ReferenceData,
        expected_type: Mapping[str, str], limits: ValidationLimits, keys_must_match: bool,
    ) -> list[Priced | None]:  # fmt: skip
        """Per event, what the fast lane accepted, or None: the per-event path decides."""
        verdicts: list[Priced | None] = [None] * len(events)
        if refdata.policy.require_signed_events:
            return verdicts
        if refdata is not self._refdata:
            self._refdata, self._profiles = refdata, {}
        chosen: dict[str, list[int]] = {}
        for i, event in enumerate(events):
            name = expected_type.get(event.topic)
            if name in self.plans and not event.headers:
                chosen.setdefault(name, []).append(i)
        for name, rows in chosen.items():
            picked = [events[i] for i in rows]
            found = self._accept_type(name, picked, refdata, limits, keys_must_match)
            for i, verdict in zip(rows, found, strict=True):
                verdicts[i] = verdict
        return verdicts

    def _accept_type(
        self, name: str, events: Sequence[RawEvent], refdata: ReferenceData,
        limits: ValidationLimits, keys_must_match: bool,
    ) -> list[Priced | None]:  # fmt: skip
        plan = self.plans[name]
        data, buffer, starts, ends = pack([e.value for e in events])
        rows = decode_rows(plan, buffer, starts, ends)
        ok = rows.ok & (ends - starts <= self.codec.record_bytes_max)
        ok &= _lengths_ok(plan, rows, OPTIONAL_TEXT.get(name))
        _, keys, key_starts, key_ends = pack([e.key or b"" for e in events])
        field = plan.index(EVENT_KEY_FIELDS[name])
        _keys_match(ok, keys, key_starts, key_ends, buffer, rows.str_offset[:, field],
                    rows.str_length[:, field], keys_must_match)  # fmt: skip
        profile, params, keyed = self._profiles_of(name, plan, rows, ok, data, refdata)
        now_ms = np.fromiter((e.timestamp_ms for e in events), np.int64, len(events))
        exact, time_ms = np.zeros(len(events), np.int64), np.zeros(len(events), np.int64)
        number = rows.number
        column = {f: number[:, plan.index(f)] for f in plan.fields}
        which, times = _TIMES[name]
        start, end = column[times[0]], column[times[1]]
        _price(which, ok, profile, params, start, end, column["reported_at"],
               column[_QUANTITY[name]], now_ms, _limits(name, limits), exact, time_ms)  # fmt: skip
        return _verdicts(name, plan, rows, ok, data, keyed, profile, exact, time_ms)

    def _profiles_of(
        self, name: str, plan: RowPlan, rows: Rows, ok: np.ndarray, data: bytes,
        refdata: ReferenceData,
    ) -> tuple[np.ndarray, np.ndarray, list[Profile | None]]:  # fmt: skip
        """Per row the index of its profile in ``keyed`` (-1: none), and the
        profiles' parameters as rows of one int64 matrix."""
        first, last = 0, len(PROFILE_FIELDS[name])
        begin = (rows.str_offset[:, first] + rows.str_length[:, first]).tolist()
        end_field = rows.str_offset[:, last] + rows.str_length[:, last]
        index: dict[bytes, int] = {}
        keyed: list[Profile | None] = []
        profile = np.full(len(ok), -1, np.int64)
        for i in np.flatnonzero(ok).tolist():
            combo = data[begin[i] : int(end_field[i])]
            at = index.get(combo)
            if at is None:
                at = index[combo] = len(keyed)
                keyed.append(self._profile(name, plan, rows, i, combo, data, refdata))
            profile[i] = at
        width = max([len(p.params) for p in keyed if p is not None] or [1])
        params = np.zeros((max(len(keyed), 1), width), np.int64)
        for at, found in enumerate(keyed):
            if found is None:
                continue
            params[at, : len(found.params)] = found.params
        gone = np.array([p is None for p in keyed] or [False], np.bool_)
        profile[(profile >= 0) & gone[np.maximum(profile, 0)]] = -1
        return profile, params, keyed

    def _profile(
        self, name: str, plan: RowPlan, rows: Rows, row: int, combo: bytes, data: bytes,
        refdata: ReferenceData,
    ) -> Profile | None:  # fmt: skip
        cache = self._profiles.setdefault(name, {})
        if combo in cache:
            return cache[combo]
        if len(cache) >= PROFILES_MAX:
            cache.clear()
        text = {f: _text(plan, rows, row, f, data) for f in PROFILE_FIELDS[name]}
        maker = {"MeterReading": _meter_profile, "ComputeUsage": _compute_profile}
        found = maker.get(name, _payment_profile)(text, refdata)
        cache[combo] = found
        return found


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


def _text(plan: RowPlan, rows: Rows, row: int, field: str, data: bytes) -> str:
    f = plan.index(field)
    if field in plan.enum_symbols:
        return plan.enum_symbols[field][int(rows.number[row, f])]
    start = int(rows.str_offset[row, f])
    return data[start : start + int(rows.str_length[row, f])].decode("ascii")


def _verdicts(
    name: str, plan: RowPlan, rows: Rows, ok: np.ndarray, data: bytes,
    keyed: list[Profile | None], profile: np.ndarray, exact: np.ndarray, time_ms: np.ndarray,
) -> list[Priced | None]:  # fmt: skip
    verdicts: list[Priced | None] = [None] * len(ok)
    id_start, id_length = rows.str_offset[:, 0].tolist(), rows.str_length[:, 0].tolist()
    exact_list, time_list = exact.tolist(), time_ms.tolist()
    reference = plan.index("reference") if name == "Payment" else -1
    ref_start, ref_length = rows.str_offset[:, reference], rows.str_length[:, reference]
    profile_list = profile.tolist()
    for i in np.flatnonzero(ok).tolist():
        found = keyed[profile_list[i]]
        assert found is not None
        key = found.key
        if reference >= 0:
            size = int(ref_length[i])
            ref = data[int(ref_start[i]) : int(ref_start[i]) + size].decode() if size >= 0 else None
            key = (*key[:5], ref, None)
        event_id = data[id_start[i] : id_start[i] + id_length[i]].decode("ascii")
        verdicts[i] = Priced(event_id, key, exact_list[i], time_list[i])
    return verdicts


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


def _payment_profile(text: Mapping[str, str], refdata: ReferenceData) -> Profile | None:
    reporter, payer, payee = text["reporter_id"], text["payer_id"], text["payee_id"]
    kind, currency = text["kind"], text["currency"]
    spec = refdata.payment_kind(kind)
    if spec is None or currency not in refdata.currencies or payer == payee:
        return None
    may_report = (payer, payee) if kind == PaymentKind.ELECTRICITY_BILL else (payer,)
    if reporter not in may_report or not _active(refdata, reporter, payer, payee):
        return None
    if refdata.account(payer, currency) is None or refdata.account(payee, currency) is None:
        return None
    return Profile((currency, payer, payee, "PAYMENT", spec.priority, None, None),
                   (spec.max_amount_minor,))  # fmt: skip
