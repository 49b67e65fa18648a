"""The fast lane's last step: the numeric rules and the price, one kernel per event
type, and the lane's verdict on the rows as columns (``LaneResult``).

What ``validate`` checked once per profile (who, which contract or book, which
accounts), the kernels here complete per row with what differs per event; then
each row answers, per row, "accepted, at this exact price (millionths) and
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

from clearing_core.ingest.batch import AggregateKey, LaneResult, RawBatch
from clearing_core.ingest.checks import ValidationLimits
from clearing_core.ingest.fast_lane.decode import Columns, cut
from clearing_core.ingest.fast_lane.validate import Profiled
from clearing_core.jit import I64, Mask, kernel
from clearing_core.money import INT64_MAX
from clearing_core.refdata.models import CARRY_MAX, PRICE_SCALE

MS_PER_MINUTE = 60_000
MINUTES_PER_DAY = 1_440
# Columns of a meter profile's parameter row; bands follow as (start, end, tariff).
M_CAPACITY, M_VALID_FROM, M_VALID_TO, M_TARIFF_MAX, M_UTC_OFFSET, M_BASE, M_BANDS = range(7)
C_PRICE, C_QUANTITY_MAX = range(2)
P_AMOUNT_MAX = 0
METER, COMPUTE, PAYMENT = range(3)
_TIMES = {"MeterReading": (METER, ("interval_start", "interval_end")),
          "ComputeUsage": (COMPUTE, ("usage_start", "usage_end")),
          "Payment": (PAYMENT, ("reported_at", "reported_at"))}  # fmt: skip
_QUANTITY = {"MeterReading": "energy_wh", "ComputeUsage": "quantity", "Payment": "amount_minor"}
_NO_KEY: AggregateKey = ("", "", "", "", 0, None, None)  # of a profile no accepted row has


def price_rows(
    columns: Columns, events: RawBatch, found: Profiled, limits: ValidationLimits
) -> LaneResult:
    """The rows with a profile (``found``) that pass the rest of the rules, priced: the
    lane's verdict, as columns; any other row is left to the per-event path."""
    name, count = columns.name, len(columns.ok)
    if not len(events) == len(found.profile) == count:
        raise ValueError(f"price_rows: {len(events)} events, {len(found.profile)} profiles, "
                         f"{count} rows")  # fmt: skip
    if count and found.profile.max() >= len(found.params):
        raise ValueError("price_rows: a profile index past the parameters")
    now_ms = np.fromiter(events.timestamps_ms, np.int64, count)
    exact, time_ms = np.zeros(count, np.int64), np.zeros(count, np.int64)
    which, (start, end) = _TIMES[name]
    _price(which, columns.ok, found.profile, found.params, columns.number(start),
           columns.number(end), columns.number("reported_at"), columns.number(_QUANTITY[name]),
           now_ms, _limits(name, limits), exact, time_ms)  # fmt: skip
    return _accepted(columns, found, exact, time_ms)


def _limits(name: str, limits: ValidationLimits) -> I64:
    span = {"MeterReading": limits.max_meter_interval_ms,
            "ComputeUsage": limits.max_usage_window_ms}.get(name, 0)  # fmt: skip
    return np.array([span, limits.max_age_ms, limits.max_future_skew_ms], np.int64)


def _accepted(columns: Columns, found: Profiled, exact: I64, time_ms: I64) -> LaneResult:
    """The accepted rows as columns; each one's aggregate key is its profile's (a
    payment's reference is not in it: ``batch.AggregateKey``)."""
    good = np.flatnonzero(columns.ok)
    rows, text = columns.rows, columns.text
    event_ids = cut(text, rows.str_offset[good, 0], rows.str_length[good, 0])
    keys = [_NO_KEY if k is None else k for k in found.keys]
    return LaneResult(good, event_ids, keys, found.profile[good], exact[good], time_ms[good])


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
