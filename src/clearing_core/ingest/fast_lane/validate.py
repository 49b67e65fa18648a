"""The fast lane's third step: the business rules that depend on the strings, once
per profile.

Everything that depends on the strings (reference-data lookups, who may report
what, accounts) is the same for every event with the same reporter, contract,
meter, provider, customer, book, sku, payer, payee, kind and currency; those
fields sit back to back in the encoding, so their bytes name a *profile*, which
is checked once and cached per reference data (payments, whose profiles are
mostly new, are checked by parts instead: ``payments``). A row keeps the index of
its profile, and the profile carries what the kernels of ``price`` still check
and price per row (times, quantities, capacity, tariff bands). A row without a
profile is left to the per-event path, which tells why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import islice
from typing import NamedTuple

import numpy as np

from clearing_core.ingest.batch import AggregateKey
from clearing_core.ingest.fast_lane.decode import Columns
from clearing_core.ingest.fast_lane.payments import payment_profiles
from clearing_core.ingest.fast_lane.spans import span_groups
from clearing_core.jit import I64
from clearing_core.money import INT64_MAX
from clearing_core.refdata import ReferenceData

# Cached profiles per event type; that type's cache starts again past its bound.
# Meter and usage profiles are bounded by the reference data (contracts x meters;
# books x skus x customers), so the caches hold them all: at 20,000 the 20,215 usage
# profiles of the bench's reference data overflowed it again and again, and a quarter
# of all usage events made one (about 650 bytes each: 65,536 is at most about 43 MB).
# Payments are checked by parts, uncached (``payments``): their profiles are mostly
# new (60k in 100k generated payments), and a cache of them only grew.
PROFILES_MAX = {"MeterReading": 65_536, "ComputeUsage": 65_536}
# The fields whose bytes name a profile, after the event id, in schema order.
PROFILE_FIELDS = {
    "MeterReading": ("reporter_id", "contract_id", "meter_id"),
    "ComputeUsage": ("reporter_id", "provider_id", "customer_id", "price_book_id", "sku"),
    "Payment": ("reporter_id", "payer_id", "payee_id", "kind", "currency"),
}
_INT64_MIN = -(2**63)


class Profile(NamedTuple):
    key: AggregateKey
    params: tuple[int, ...]  # the columns of ``price``: M_*, C_* or P_*


class Profiled(NamedTuple):
    """Per row the index of its profile in ``keys`` (-1: none), the profiles'
    parameters as rows of one int64 matrix (zero-padded), and each profile's aggregate
    key (None: a profile that failed its checks, which no row keeps)."""

    profile: I64
    params: I64
    keys: Sequence[AggregateKey | None]


class Profiles:
    """The profiles of one reference data, cached per event type."""

    def __init__(self) -> None:
        self.refdata: ReferenceData | None = None
        self.cache: dict[str, dict[bytes, Profile | None]] = {}

    def of(self, columns: Columns, refdata: ReferenceData) -> Profiled:
        """The profile of each ok row. Rows are grouped by a hash of their profile bytes
        in a kernel, and checked byte for byte against the first row of their group;
        Python sees each distinct profile once."""
        if refdata is not self.refdata:
            self.refdata, self.cache = refdata, {}
        if columns.name == "Payment":  # by parts, uncached: payment profiles are mostly new
            return Profiled(*payment_profiles(columns, refdata))
        rows, ok = columns.rows, columns.ok
        last = len(PROFILE_FIELDS[columns.name])
        begin = rows.str_offset[:, 0] + rows.str_length[:, 0]
        end = rows.str_offset[:, last] + rows.str_length[:, last]
        good, firsts, inverse, same = span_groups(columns.buffer, begin, end, ok)
        keyed = self._made(columns, firsts, begin, end, refdata)
        profile = np.full(len(ok), -1, np.int64)
        gone = np.array([p is None for p in keyed] + [False], np.bool_)
        profile[good] = np.where(same & ~gone[inverse], inverse, -1)
        width = max([len(p.params) for p in keyed if p is not None] or [1])
        empty = (0,) * width
        padded = [empty if p is None else p.params + empty[len(p.params) :] for p in keyed]
        return Profiled(
            profile,
            np.array(padded or [empty], np.int64),
            [None if p is None else p.key for p in keyed],
        )

    def _made(
        self, columns: Columns, firsts: I64, begin: I64, end: I64, refdata: ReferenceData
    ) -> list[Profile | None]:
        """The profile of each row of ``firsts`` (one row per distinct profile), from the
        cache or made, the new ones together: their texts are cut column by column, and
        the cache keeps what it can below its ``PROFILES_MAX`` (it starts again when full).
        Why together: one at a time, a new profile's texts cost more than its checks."""
        name, data = columns.name, columns.data
        cache = self.cache.setdefault(name, {})
        combos = [data[a:b] for a, b in zip(begin[firsts].tolist(), end[firsts].tolist(),
                                            strict=True)]  # fmt: skip
        missing = [at for at, combo in enumerate(combos) if combo not in cache]
        fields = PROFILE_FIELDS[name]
        texts = [columns.texts(firsts[missing], f) for f in fields]
        maker = _MAKERS[name]
        made = {combos[at]: maker(dict(zip(fields, row, strict=True)), refdata)
                for at, row in zip(missing, zip(*texts, strict=True), strict=True)}  # fmt: skip
        keyed = [made[combo] if combo in made else cache[combo] for combo in combos]
        bound = PROFILES_MAX[name]
        if len(cache) + len(made) > bound:
            cache.clear()
        cache.update(islice(made.items(), bound - len(cache)))
        return keyed


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
