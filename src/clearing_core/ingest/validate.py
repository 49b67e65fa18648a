"""Validation of decoded events against one reference-data snapshot.

Why pure and total: the ingest stage must decide, for every record, either
"these are the facts to price" or "reject, with this reason", the same way
on every worker and on every replay. So nothing here reads a clock or a
setting: the reference time (the record's Kafka log timestamp) and the
limits are passed in, checks run in a fixed order and the first failure
wins. The result is a small frozen ``PricedInput`` or a ``Rejection`` with an
UPPER_SNAKE reason code and a one-line message for the DLQ.

Who may report what:
- a meter reading: the contract's seller or buyer (either side's meter data
  is accepted; the contract says who pays);
- compute usage: the provider only (it meters its own service);
- a payment: the payer, since a payer cannot be made to owe by someone
  else's claim; except an ``ELECTRICITY_BILL``, which the payee (the utility
  or seller) may also report, because utilities bill their customers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from clearing_core.errors import InputError
from clearing_core.ingest.envelope import InputReason, first_unprintable
from clearing_core.ingest.price import tariff_at
from clearing_core.money import INT64_MAX
from clearing_core.refdata.models import CARRY_MAX, PRICE_SCALE, Participant, PaymentKind
from clearing_core.refdata.snapshot import ReferenceData

ID_LENGTH_MAX = 64
EVENT_ID_LENGTH_MAX = 128
TEXT_LENGTH_MAX = 256  # payment reference, model name
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


class Reason(StrEnum):
    """Rejection reason codes (the ``reason_code`` of ``clearing.Rejected``)."""

    UNKNOWN_PARTICIPANT = "UNKNOWN_PARTICIPANT"
    INACTIVE_PARTICIPANT = "INACTIVE_PARTICIPANT"
    UNKNOWN_CONTRACT = "UNKNOWN_CONTRACT"
    UNKNOWN_METER = "UNKNOWN_METER"
    METER_NOT_ON_CONTRACT = "METER_NOT_ON_CONTRACT"
    REPORTER_NOT_PARTY = "REPORTER_NOT_PARTY"
    UNKNOWN_PRICE_BOOK = "UNKNOWN_PRICE_BOOK"
    UNKNOWN_SKU = "UNKNOWN_SKU"
    CUSTOMER_NOT_ALLOWED = "CUSTOMER_NOT_ALLOWED"
    CURRENCY_NOT_ALLOWED = "CURRENCY_NOT_ALLOWED"
    UNKNOWN_CURRENCY = "UNKNOWN_CURRENCY"
    UNKNOWN_PAYMENT_KIND = "UNKNOWN_PAYMENT_KIND"
    NEGATIVE_QUANTITY = "NEGATIVE_QUANTITY"
    QUANTITY_ABOVE_LIMIT = "QUANTITY_ABOVE_LIMIT"
    NON_POSITIVE_AMOUNT = "NON_POSITIVE_AMOUNT"
    SELF_PAYMENT = "SELF_PAYMENT"
    BAD_INTERVAL = "BAD_INTERVAL"
    TIMESTAMP_TOO_OLD = "TIMESTAMP_TOO_OLD"
    TIMESTAMP_IN_FUTURE = "TIMESTAMP_IN_FUTURE"
    CONTRACT_NOT_VALID_AT = "CONTRACT_NOT_VALID_AT"
    FIELD_TOO_LONG = "FIELD_TOO_LONG"
    EMPTY_FIELD = "EMPTY_FIELD"


@dataclass(frozen=True, slots=True)
class ValidationLimits:
    """Bounds on event times, relative to the reference time passed with each event."""

    max_age_ms: int = 35 * 86_400_000
    max_future_skew_ms: int = 5 * 60_000
    max_meter_interval_ms: int = 86_400_000
    max_usage_window_ms: int = 86_400_000

    def __post_init__(self) -> None:
        assert self.max_age_ms > 0
        assert self.max_future_skew_ms >= 0
        assert self.max_meter_interval_ms > 0
        assert self.max_usage_window_ms > 0


DEFAULT_LIMITS = ValidationLimits()


@dataclass(frozen=True, slots=True)
class PricedInput:
    """An accepted event reduced to what pricing and netting need.

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
    contract_id: str | None  # PPA contract, price book, or payment reference
    event_time_ms: int  # interval end, usage end, or payment reported_at


@dataclass(frozen=True, slots=True)
class Rejection:
    reason_code: str
    message: str
    event_id: str | None


ValidationResult = PricedInput | Rejection


class _RejectError(Exception):
    """Internal early exit: the first failed check."""

    def __init__(self, reason: Reason | InputReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def to_ms(value: datetime | int) -> int:
    """Milliseconds since the epoch of a decoded timestamp (aware datetime) or int ms."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InputError("timestamp without a time zone")
        return (value - _EPOCH) // _ONE_MS
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"timestamp must be a datetime or int ms, got {type(value).__name__}")
    return value


def _check_text(record: Mapping[str, Any], field: str, limit: int = ID_LENGTH_MAX) -> str:
    value = record.get(field)
    if not isinstance(value, str) or not value:
        raise _RejectError(Reason.EMPTY_FIELD, f"{field} is empty")
    if len(value) > limit:
        raise _RejectError(
            Reason.FIELD_TOO_LONG, f"{field} is {len(value)} characters (max {limit})"
        )
    bad = first_unprintable(value)
    if bad is not None:
        raise _RejectError(
            InputReason.UNPRINTABLE_FIELD, f"{field} holds unprintable character U+{ord(bad):04X}"
        )
    return value


def _check_optional_text(record: Mapping[str, Any], field: str) -> str | None:
    value = record.get(field)
    if not isinstance(value, str):
        return None
    if len(value) > TEXT_LENGTH_MAX:
        raise _RejectError(
            Reason.FIELD_TOO_LONG, f"{field} is {len(value)} characters (max {TEXT_LENGTH_MAX})"
        )
    return value


def _check_times(
    start_ms: int, end_ms: int, reported_ms: int, max_span_ms: int, now_ms: int,
    limits: ValidationLimits, what: str,
) -> None:  # fmt: skip
    if end_ms <= start_ms:
        raise _RejectError(Reason.BAD_INTERVAL, f"{what} ends at or before it starts")
    if end_ms - start_ms > max_span_ms:
        raise _RejectError(
            Reason.BAD_INTERVAL, f"{what} lasts {end_ms - start_ms} ms (max {max_span_ms})"
        )
    _check_not_future(max(end_ms, reported_ms), now_ms, limits, f"{what} end or reported_at")
    _check_not_old(min(start_ms, reported_ms), now_ms, limits, f"{what} start or reported_at")


def _check_not_future(at_ms: int, now_ms: int, limits: ValidationLimits, what: str) -> None:
    if at_ms > now_ms + limits.max_future_skew_ms:
        raise _RejectError(
            Reason.TIMESTAMP_IN_FUTURE,
            f"{what} is {at_ms - now_ms} ms after the log time (max {limits.max_future_skew_ms})",
        )


def _check_not_old(at_ms: int, now_ms: int, limits: ValidationLimits, what: str) -> None:
    if at_ms < now_ms - limits.max_age_ms:
        raise _RejectError(
            Reason.TIMESTAMP_TOO_OLD,
            f"{what} is {now_ms - at_ms} ms before the log time (max {limits.max_age_ms})",
        )


def _participant(refdata: ReferenceData, participant_id: str, field: str) -> Participant:
    found = refdata.participants.get(participant_id)
    if found is None:
        raise _RejectError(
            Reason.UNKNOWN_PARTICIPANT, f"{field} {participant_id!r} is not a participant"
        )
    return found


def _require_active(*parties: Participant) -> None:
    for party in parties:
        if not party.active:
            raise _RejectError(Reason.INACTIVE_PARTICIPANT, f"{party.participant_id!r} is inactive")


def _require_account(refdata: ReferenceData, participant_id: str, currency: str) -> None:
    if refdata.account(participant_id, currency) is None:
        raise _RejectError(
            Reason.CURRENCY_NOT_ALLOWED, f"{participant_id!r} has no {currency} account"
        )


_Check = Callable[[Mapping[str, Any], ReferenceData, int, ValidationLimits], PricedInput]


def _run(
    check: _Check,
    record: Mapping[str, Any],
    refdata: ReferenceData,
    now_ms: int,
    limits: ValidationLimits,
) -> ValidationResult:
    """The first failed check as a ``Rejection``, else the priced facts."""
    try:
        result = check(record, refdata, now_ms, limits)
    except _RejectError as reject:
        event_id = record.get("event_id")
        return Rejection(
            str(reject.reason), reject.message, event_id if isinstance(event_id, str) else None
        )
    return result


def validate_meter_reading(
    record: Mapping[str, Any],
    refdata: ReferenceData,
    *,
    reference_time_ms: int,
    limits: ValidationLimits = DEFAULT_LIMITS,
) -> ValidationResult:
    """A decoded ``clearing.MeterReading``: the buyer owes the seller energy * tariff."""
    return _run(_meter, record, refdata, reference_time_ms, limits)


def _meter(
    record: Mapping[str, Any], refdata: ReferenceData, now_ms: int, limits: ValidationLimits
) -> PricedInput:
    event_id = _check_text(record, "event_id", EVENT_ID_LENGTH_MAX)
    reporter_id = _check_text(record, "reporter_id")
    contract_id = _check_text(record, "contract_id")
    meter_id = _check_text(record, "meter_id")
    start_ms, end_ms = to_ms(record["interval_start"]), to_ms(record["interval_end"])
    reported_ms = to_ms(record["reported_at"])
    _check_times(start_ms, end_ms, reported_ms, limits.max_meter_interval_ms, now_ms, limits,
                 "interval")  # fmt: skip
    contract = refdata.contracts.get(contract_id)
    if contract is None:
        raise _RejectError(Reason.UNKNOWN_CONTRACT, f"contract {contract_id!r} is not known")
    metered = refdata.contract_for_meter(meter_id)
    if metered is None:
        raise _RejectError(Reason.UNKNOWN_METER, f"meter {meter_id!r} is on no contract")
    if metered.contract_id != contract_id:
        raise _RejectError(
            Reason.METER_NOT_ON_CONTRACT,
            f"meter {meter_id!r} is on contract {metered.contract_id!r}, not {contract_id!r}",
        )
    reporter = _participant(refdata, reporter_id, "reporter_id")
    if reporter_id not in (contract.seller_id, contract.buyer_id):
        raise _RejectError(
            Reason.REPORTER_NOT_PARTY,
            f"reporter {reporter_id!r} is neither seller nor buyer of {contract_id!r}",
        )
    seller = refdata.participants[contract.seller_id]
    buyer = refdata.participants[contract.buyer_id]
    _require_active(reporter, seller, buyer)
    if (contract.valid_from is not None and start_ms < contract.valid_from) or (
        contract.valid_to is not None and end_ms > contract.valid_to
    ):
        raise _RejectError(
            Reason.CONTRACT_NOT_VALID_AT,
            f"interval {start_ms}..{end_ms} ms is outside the validity of {contract_id!r}",
        )
    energy_wh = _meter_energy(record, contract.capacity_kw, end_ms - start_ms)
    if energy_wh * contract.max_tariff_minor_per_mwh() + CARRY_MAX > INT64_MAX:
        raise _RejectError(Reason.QUANTITY_ABOVE_LIMIT, f"energy {energy_wh} Wh * tariff overflows")
    return PricedInput(
        "METER", event_id, contract.buyer_id, contract.seller_id, contract.currency, energy_wh,
        tariff_at(contract, start_ms), f"ppa:{contract_id}", contract.priority, contract_id,
        end_ms,
    )  # fmt: skip


def _meter_energy(record: Mapping[str, Any], capacity_kw: int | None, span_ms: int) -> int:
    energy_wh: int = record["energy_wh"]
    if energy_wh < 0:
        raise _RejectError(Reason.NEGATIVE_QUANTITY, f"energy_wh {energy_wh} is negative")
    # kW * ms / 3,600 = Wh; compared multiplied out, so exactly.
    if capacity_kw is not None and energy_wh * 3_600 > capacity_kw * span_ms:
        raise _RejectError(
            Reason.QUANTITY_ABOVE_LIMIT,
            f"energy_wh {energy_wh} exceeds capacity {capacity_kw} kW over {span_ms} ms "
            f"({capacity_kw * span_ms // 3_600} Wh)",
        )
    return energy_wh


def validate_compute_usage(
    record: Mapping[str, Any],
    refdata: ReferenceData,
    *,
    reference_time_ms: int,
    limits: ValidationLimits = DEFAULT_LIMITS,
) -> ValidationResult:
    """A decoded ``clearing.ComputeUsage``: the customer owes the provider q * price."""
    return _run(_compute, record, refdata, reference_time_ms, limits)


def _compute(
    record: Mapping[str, Any], refdata: ReferenceData, now_ms: int, limits: ValidationLimits
) -> PricedInput:
    event_id = _check_text(record, "event_id", EVENT_ID_LENGTH_MAX)
    reporter_id = _check_text(record, "reporter_id")
    provider_id = _check_text(record, "provider_id")
    customer_id = _check_text(record, "customer_id")
    book_id = _check_text(record, "price_book_id")
    sku = _check_text(record, "sku")
    _check_optional_text(record, "model")
    start_ms, end_ms = to_ms(record["usage_start"]), to_ms(record["usage_end"])
    reported_ms = to_ms(record["reported_at"])
    _check_times(start_ms, end_ms, reported_ms, limits.max_usage_window_ms, now_ms, limits,
                 "usage window")  # fmt: skip
    book = refdata.price_books.get(book_id)
    if book is None or book.provider_id != provider_id:
        raise _RejectError(
            Reason.UNKNOWN_PRICE_BOOK, f"provider {provider_id!r} has no price book {book_id!r}"
        )
    provider = _participant(refdata, provider_id, "provider_id")
    reporter = _participant(refdata, reporter_id, "reporter_id")
    if reporter_id != provider_id:
        raise _RejectError(
            Reason.REPORTER_NOT_PARTY, f"reporter {reporter_id!r} is not provider {provider_id!r}"
        )
    customer = _participant(refdata, customer_id, "customer_id")
    if customer_id == provider_id:
        raise _RejectError(Reason.SELF_PAYMENT, f"customer and provider are both {provider_id!r}")
    _require_active(reporter, provider, customer)
    entry = refdata.price_entry(book_id, sku)
    if entry is None:
        raise _RejectError(Reason.UNKNOWN_SKU, f"price book {book_id!r} has no sku {sku!r}")
    if not refdata.book_lists_customer(book_id, customer_id):
        raise _RejectError(
            Reason.CUSTOMER_NOT_ALLOWED, f"{customer_id!r} is not a customer of {book_id!r}"
        )
    _require_account(refdata, customer_id, book.currency)
    quantity: int = record["quantity"]
    if quantity < 0:
        raise _RejectError(Reason.NEGATIVE_QUANTITY, f"quantity {quantity} is negative")
    if quantity > entry.max_quantity_per_event:
        raise _RejectError(
            Reason.QUANTITY_ABOVE_LIMIT,
            f"quantity {quantity} of {sku!r} exceeds {entry.max_quantity_per_event} per event",
        )
    return PricedInput(
        "COMPUTE", event_id, customer_id, provider_id, book.currency, quantity,
        entry.price_minor_per_million, f"book:{book_id}:{customer_id}", book.priority, book_id,
        end_ms,
    )  # fmt: skip


def validate_payment(
    record: Mapping[str, Any],
    refdata: ReferenceData,
    *,
    reference_time_ms: int,
    limits: ValidationLimits = DEFAULT_LIMITS,
) -> ValidationResult:
    """A decoded ``clearing.Payment``: the payer owes the payee the amount, exactly."""
    return _run(_payment, record, refdata, reference_time_ms, limits)


def _payment(
    record: Mapping[str, Any], refdata: ReferenceData, now_ms: int, limits: ValidationLimits
) -> PricedInput:
    event_id = _check_text(record, "event_id", EVENT_ID_LENGTH_MAX)
    reporter_id = _check_text(record, "reporter_id")
    payer_id = _check_text(record, "payer_id")
    payee_id = _check_text(record, "payee_id")
    currency = _check_text(record, "currency")
    reference = _check_optional_text(record, "reference")
    reported_ms = to_ms(record["reported_at"])
    _check_not_future(reported_ms, now_ms, limits, "reported_at")
    _check_not_old(reported_ms, now_ms, limits, "reported_at")
    kind = str(record["kind"])
    spec = refdata.payment_kind(kind)
    if spec is None:
        raise _RejectError(Reason.UNKNOWN_PAYMENT_KIND, f"payment kind {kind!r} is not offered")
    if currency not in refdata.currencies:
        raise _RejectError(Reason.UNKNOWN_CURRENCY, f"currency {currency!r} is not known")
    payer = _participant(refdata, payer_id, "payer_id")
    payee = _participant(refdata, payee_id, "payee_id")
    reporter = _participant(refdata, reporter_id, "reporter_id")
    if payer_id == payee_id:
        raise _RejectError(Reason.SELF_PAYMENT, f"payer and payee are both {payer_id!r}")
    may_report = {payer_id, payee_id} if kind == PaymentKind.ELECTRICITY_BILL else {payer_id}
    if reporter_id not in may_report:
        raise _RejectError(
            Reason.REPORTER_NOT_PARTY, f"reporter {reporter_id!r} may not report a {kind} of "
            f"{payer_id!r}",
        )  # fmt: skip
    _require_active(reporter, payer, payee)
    _require_account(refdata, payer_id, currency)
    _require_account(refdata, payee_id, currency)
    amount: int = record["amount_minor"]
    if amount <= 0:
        raise _RejectError(Reason.NON_POSITIVE_AMOUNT, f"amount_minor {amount} is not positive")
    if amount > spec.max_amount_minor:
        raise _RejectError(
            Reason.QUANTITY_ABOVE_LIMIT,
            f"amount_minor {amount} exceeds {spec.max_amount_minor} for {kind}",
        )
    return PricedInput(
        "PAYMENT", event_id, payer_id, payee_id, currency, amount, PRICE_SCALE, "",
        spec.priority, reference, reported_ms,
    )  # fmt: skip


_VALIDATORS = {
    "MeterReading": validate_meter_reading,
    "ComputeUsage": validate_compute_usage,
    "Payment": validate_payment,
}


def validate_event(
    record_type: str,
    record: Mapping[str, Any],
    refdata: ReferenceData,
    *,
    reference_time_ms: int,
    limits: ValidationLimits = DEFAULT_LIMITS,
) -> ValidationResult:
    """Dispatch on the record type (``MeterReading``, ``ComputeUsage``, ``Payment``,
    with or without the ``clearing.`` namespace)."""
    validator = _VALIDATORS.get(record_type.removeprefix("clearing."))
    if validator is None:
        raise InputError(f"no validation for record type {record_type!r}")
    return validator(record, refdata, reference_time_ms=reference_time_ms, limits=limits)
