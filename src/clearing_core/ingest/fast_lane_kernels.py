"""The fast lane's numeric checks and pricing, one kernel per event type.

Each kernel answers, per row, "accepted, at this exact price (millionths) and
event time" or "not sure": a row fails here when any rule of
``clearing_core.ingest.validate`` would refuse it, or when an intermediate product
could leave int64. Then the row goes through the per-event path, which gives
the exact verdict and reason. The rules are the same as there, multiplied out
so that nothing is rounded:
- times: the interval ends after it starts, lasts at most its limit, and it
  and ``reported_at`` lie within [log time - max age, log time + skew];
- a meter reading: within the contract's validity; energy * 3,600 at most
  capacity kW * span ms; energy * the highest tariff + a carry within int64;
  the tariff is the band holding the interval's local start minute, else base;
- compute usage: quantity within [0, the sku's maximum per event];
- a payment: amount within [1, the kind's maximum].
"""

from __future__ import annotations

import numpy as np

from clearing_core.encoding.avro_rows import U8
from clearing_core.jit import I64, Mask, kernel
from clearing_core.money import INT64_MAX
from clearing_core.refdata.models import CARRY_MAX, PRICE_SCALE

MS_PER_MINUTE = 60_000
MINUTES_PER_DAY = 1_440
# Columns of a meter profile's parameter row; bands follow as (start, end, tariff).
M_CAPACITY, M_VALID_FROM, M_VALID_TO, M_TARIFF_MAX, M_UTC_OFFSET, M_BASE, M_BANDS = range(7)
C_PRICE, C_QUANTITY_MAX = range(2)
P_AMOUNT_MAX = 0


@kernel
def _times_ok(
    start_ms: int, end_ms: int, reported_ms: int, now_ms: int, span_max_ms: int,
    age_max_ms: int, skew_max_ms: int,
) -> bool:  # fmt: skip
    newest, oldest = now_ms + skew_max_ms, now_ms - age_max_ms
    if end_ms > newest or reported_ms > newest or start_ms < oldest or reported_ms < oldest:
        return False
    return start_ms < end_ms and end_ms - start_ms <= span_max_ms


@kernel
def _tariff(params: I64, p: int, start_ms: int) -> int:
    minute = (start_ms // MS_PER_MINUTE + params[p, M_UTC_OFFSET]) % MINUTES_PER_DAY
    for b in range(params[p, M_BANDS]):
        at = M_BANDS + 1 + 3 * b
        if params[p, at] <= minute < params[p, at + 1]:
            return int(params[p, at + 2])
    return int(params[p, M_BASE])


METER, COMPUTE, PAYMENT = range(3)


@kernel
def _meter_row(
    params: I64, p: int, start: int, end: int, reported: int, energy: int, now: int,
    limits_ms: I64,
) -> tuple[bool, int]:  # fmt: skip
    good = _times_ok(start, end, reported, now, limits_ms[0], limits_ms[1], limits_ms[2])
    good = good and params[p, M_VALID_FROM] <= start and end <= params[p, M_VALID_TO]
    good = good and energy >= 0
    capacity = params[p, M_CAPACITY]
    if good and capacity >= 0:
        span = end - start
        good = capacity <= INT64_MAX // span and energy <= capacity * span // 3_600
    tariff_max = params[p, M_TARIFF_MAX]
    if good and tariff_max > 0:
        good = energy <= (INT64_MAX - CARRY_MAX) // tariff_max
    return good, energy * _tariff(params, p, start) if good else 0


@kernel
def _compute_row(
    params: I64, p: int, start: int, end: int, reported: int, quantity: int, now: int,
    limits_ms: I64,
) -> tuple[bool, int]:  # fmt: skip
    price = params[p, C_PRICE]
    good = _times_ok(start, end, reported, now, limits_ms[0], limits_ms[1], limits_ms[2])
    good = good and 0 <= quantity <= params[p, C_QUANTITY_MAX]
    good = good and (price <= 0 or quantity <= INT64_MAX // price)
    return good, quantity * price if good else 0


@kernel
def _payment_row(
    params: I64, p: int, at: int, amount: int, now: int, limits_ms: I64
) -> tuple[bool, int]:
    good = now - limits_ms[1] <= at <= now + limits_ms[2]
    good = good and 0 < amount <= params[p, P_AMOUNT_MAX]
    good = good and amount <= INT64_MAX // PRICE_SCALE
    return good, amount * PRICE_SCALE if good else 0


@kernel
def _price(
    which: int, ok: Mask, profile: I64, params: I64, start_ms: I64, end_ms: I64,
    reported_ms: I64, quantity: I64, now_ms: I64, limits_ms: I64, exact: I64, time_ms: I64,
) -> None:  # fmt: skip
    """Rows of one event type (``which``); ``limits_ms``: span max, age max, skew max.
    A payment's only time is ``reported_ms`` (pass it as start and end too)."""
    for i in range(len(ok)):
        p = profile[i]
        if not ok[i] or p < 0:
            ok[i] = False
            continue
        start, end, at, q, now = start_ms[i], end_ms[i], reported_ms[i], quantity[i], now_ms[i]
        if which == METER:
            good, value = _meter_row(params, p, start, end, at, q, now, limits_ms)
        elif which == COMPUTE:
            good, value = _compute_row(params, p, start, end, at, q, now, limits_ms)
        else:
            good, value = _payment_row(params, p, at, q, now, limits_ms)
        ok[i] = good
        if good:
            exact[i] = value
            time_ms[i] = at if which == PAYMENT else end


@kernel
def _keys_match(
    ok: Mask, keys: U8, key_starts: I64, key_ends: I64, values: U8,
    field_offset: I64, field_length: I64, must_match: bool,
) -> None:  # fmt: skip
    """A row stays ok when its Kafka key is present and, if ``must_match``, holds
    exactly the bytes of the record's key field."""
    for i in range(len(ok)):
        size = key_ends[i] - key_starts[i]
        if size <= 0:
            ok[i] = False
        elif must_match and ok[i]:
            if size != field_length[i]:
                ok[i] = False
                continue
            for j in range(size):
                if keys[key_starts[i] + j] != values[field_offset[i] + j]:
                    ok[i] = False
                    break


_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3


@kernel
def _span_hashes(buffer: U8, begin: I64, end: I64, ok: Mask, hashes: I64) -> None:
    """FNV-1a (64 bits) of ``buffer[begin[i]:end[i]]`` per ok row: a row's profile
    bytes as one number, so that only distinct profiles reach Python."""
    for row in range(len(begin)):
        if not ok[row]:
            continue
        h = np.uint64(_FNV_OFFSET)
        for i in range(begin[row], end[row]):
            h = (h ^ np.uint64(buffer[i])) * np.uint64(_FNV_PRIME)
        hashes[row] = np.int64(h)


@kernel
def _same_spans(buffer: U8, begin: I64, end: I64, rows: I64, firsts: I64, same: Mask) -> None:
    """Whether each row's span holds exactly the bytes of its representative's (the
    first row with the same hash): a hash collision never mixes two profiles."""
    for k in range(len(rows)):
        row, first = rows[k], firsts[k]
        size = end[row] - begin[row]
        equal = size == end[first] - begin[first]
        i = 0
        while equal and i < size:
            equal = buffer[begin[row] + i] == buffer[begin[first] + i]
            i += 1
        same[k] = equal


def span_groups(buffer: U8, begin: I64, end: I64, ok: Mask) -> tuple[I64, I64, I64, Mask]:
    """The ok rows grouped by the bytes of their span ``buffer[begin:end]``: the ok
    rows, the first row of each group, each ok row's group, and whether each ok row's
    bytes equal its group's first row's (rows are grouped by a hash, so a collision
    shows as False and never merges two spans). Python then sees each group once."""
    hashes = np.zeros(len(begin), np.int64)
    _span_hashes(buffer, begin, end, ok, hashes)
    good = np.flatnonzero(ok)
    _, first_at, inverse = np.unique(hashes[good], return_index=True, return_inverse=True)
    firsts = good[first_at]
    same = np.zeros(len(good), np.bool_)
    _same_spans(buffer, begin, end, good, firsts[inverse], same)
    return good, firsts, np.asarray(inverse, np.int64).reshape(-1), same
