"""The ingest stage's third step, one event at a time: the business rules, against
one reference-data snapshot (``validate_events``; the fast lane applies the same
rules in columns, ``fast_lane.validate`` and ``fast_lane.price``).

Why pure and total: the ingest stage must decide, for every record, either
"these are the facts to price" or "reject, with this reason", the same way
on every worker and on every replay. So nothing here reads a clock or a
setting: the reference time (the record's Kafka log timestamp) and the
limits are passed in, checks (``checks``) run in a fixed order and the first
failure wins. The result is a small frozen ``PricedInput`` or a ``Rejection`` with an
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

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from clearing_core.errors import InputError
from clearing_core.ingest.batch import Case, PricedInput, Refused
from clearing_core.ingest.checks import (
    DEFAULT_LIMITS,
    EVENT_ID_LENGTH_MAX,
    Reason,
    RejectError,
    Rejection,
    ValidationLimits,
    check_not_future,
    check_not_old,
    check_optional_text,
    check_text,
    check_times,
    participant,
    require_account,
    require_active,
    to_ms,
)
from clearing_core.ingest.price import tariff_at
from clearing_core.money import INT64_MAX
from clearing_core.refdata.models import CARRY_MAX, PRICE_SCALE, PaymentKind
from clearing_core.refdata.snapshot import ReferenceData

ValidationResult = PricedInput | Rejection


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
    except RejectError as reject:
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
    event_id = check_text(record, "event_id", EVENT_ID_LENGTH_MAX)
    reporter_id = check_text(record, "reporter_id")
    contract_id = check_text(record, "contract_id")
    meter_id = check_text(record, "meter_id")
    start_ms, end_ms = to_ms(record["interval_start"]), to_ms(record["interval_end"])
    reported_ms = to_ms(record["reported_at"])
    check_times(start_ms, end_ms, reported_ms, limits.max_meter_interval_ms, now_ms, limits,
                 "interval")  # fmt: skip
    contract = refdata.contracts.get(contract_id)
    if contract is None:
        raise RejectError(Reason.UNKNOWN_CONTRACT, f"contract {contract_id!r} is not known")
    metered = refdata.contract_for_meter(meter_id)
    if metered is None:
        raise RejectError(Reason.UNKNOWN_METER, f"meter {meter_id!r} is on no contract")
    if metered.contract_id != contract_id:
        raise RejectError(
            Reason.METER_NOT_ON_CONTRACT,
            f"meter {meter_id!r} is on contract {metered.contract_id!r}, not {contract_id!r}",
        )
    reporter = participant(refdata, reporter_id, "reporter_id")
    if reporter_id not in (contract.seller_id, contract.buyer_id):
        raise RejectError(
            Reason.REPORTER_NOT_PARTY,
            f"reporter {reporter_id!r} is neither seller nor buyer of {contract_id!r}",
        )
    seller = refdata.participants[contract.seller_id]
    buyer = refdata.participants[contract.buyer_id]
    require_active(reporter, seller, buyer)
    if (contract.valid_from is not None and start_ms < contract.valid_from) or (
        contract.valid_to is not None and end_ms > contract.valid_to
    ):
        raise RejectError(
            Reason.CONTRACT_NOT_VALID_AT,
            f"interval {start_ms}..{end_ms} ms is outside the validity of {contract_id!r}",
        )
    energy_wh = _meter_energy(record, contract.capacity_kw, end_ms - start_ms)
    if energy_wh * contract.max_tariff_minor_per_mwh() + CARRY_MAX > INT64_MAX:
        raise RejectError(Reason.QUANTITY_ABOVE_LIMIT, f"energy {energy_wh} Wh * tariff overflows")
    return PricedInput(
        "METER", event_id, contract.buyer_id, contract.seller_id, contract.currency, energy_wh,
        tariff_at(contract, start_ms), f"ppa:{contract_id}", contract.priority, contract_id,
        end_ms,
    )  # fmt: skip


def _meter_energy(record: Mapping[str, Any], capacity_kw: int | None, span_ms: int) -> int:
    energy_wh: int = record["energy_wh"]
    if energy_wh < 0:
        raise RejectError(Reason.NEGATIVE_QUANTITY, f"energy_wh {energy_wh} is negative")
    # kW * ms / 3,600 = Wh; compared multiplied out, so exactly.
    if capacity_kw is not None and energy_wh * 3_600 > capacity_kw * span_ms:
        raise RejectError(
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
    event_id = check_text(record, "event_id", EVENT_ID_LENGTH_MAX)
    reporter_id = check_text(record, "reporter_id")
    provider_id = check_text(record, "provider_id")
    customer_id = check_text(record, "customer_id")
    book_id = check_text(record, "price_book_id")
    sku = check_text(record, "sku")
    check_optional_text(record, "model")
    start_ms, end_ms = to_ms(record["usage_start"]), to_ms(record["usage_end"])
    reported_ms = to_ms(record["reported_at"])
    check_times(start_ms, end_ms, reported_ms, limits.max_usage_window_ms, now_ms, limits,
                 "usage window")  # fmt: skip
    book = refdata.price_books.get(book_id)
    if book is None or book.provider_id != provider_id:
        raise RejectError(
            Reason.UNKNOWN_PRICE_BOOK, f"provider {provider_id!r} has no price book {book_id!r}"
        )
    provider = participant(refdata, provider_id, "provider_id")
    reporter = participant(refdata, reporter_id, "reporter_id")
    if reporter_id != provider_id:
        raise RejectError(
            Reason.REPORTER_NOT_PARTY, f"reporter {reporter_id!r} is not provider {provider_id!r}"
        )
    customer = participant(refdata, customer_id, "customer_id")
    if customer_id == provider_id:
        raise RejectError(Reason.SELF_PAYMENT, f"customer and provider are both {provider_id!r}")
    require_active(reporter, provider, customer)
    entry = refdata.price_entry(book_id, sku)
    if entry is None:
        raise RejectError(Reason.UNKNOWN_SKU, f"price book {book_id!r} has no sku {sku!r}")
    if not refdata.book_lists_customer(book_id, customer_id):
        raise RejectError(
            Reason.CUSTOMER_NOT_ALLOWED, f"{customer_id!r} is not a customer of {book_id!r}"
        )
    require_account(refdata, customer_id, book.currency)
    quantity: int = record["quantity"]
    if quantity < 0:
        raise RejectError(Reason.NEGATIVE_QUANTITY, f"quantity {quantity} is negative")
    if quantity > entry.max_quantity_per_event:
        raise RejectError(
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
    event_id = check_text(record, "event_id", EVENT_ID_LENGTH_MAX)
    reporter_id = check_text(record, "reporter_id")
    payer_id = check_text(record, "payer_id")
    payee_id = check_text(record, "payee_id")
    currency = check_text(record, "currency")
    reference = check_optional_text(record, "reference")  # bounded like every text
    reported_ms = to_ms(record["reported_at"])
    check_not_future(reported_ms, now_ms, limits, "reported_at")
    check_not_old(reported_ms, now_ms, limits, "reported_at")
    kind = str(record["kind"])
    spec = refdata.payment_kind(kind)
    if spec is None:
        raise RejectError(Reason.UNKNOWN_PAYMENT_KIND, f"payment kind {kind!r} is not offered")
    if currency not in refdata.currencies:
        raise RejectError(Reason.UNKNOWN_CURRENCY, f"currency {currency!r} is not known")
    payer = participant(refdata, payer_id, "payer_id")
    payee = participant(refdata, payee_id, "payee_id")
    reporter = participant(refdata, reporter_id, "reporter_id")
    if payer_id == payee_id:
        raise RejectError(Reason.SELF_PAYMENT, f"payer and payee are both {payer_id!r}")
    may_report = {payer_id, payee_id} if kind == PaymentKind.ELECTRICITY_BILL else {payer_id}
    if reporter_id not in may_report:
        raise RejectError(
            Reason.REPORTER_NOT_PARTY, f"reporter {reporter_id!r} may not report a {kind} of "
            f"{payer_id!r}",
        )  # fmt: skip
    require_active(reporter, payer, payee)
    require_account(refdata, payer_id, currency)
    require_account(refdata, payee_id, currency)
    amount: int = record["amount_minor"]
    if amount <= 0:
        raise RejectError(Reason.NON_POSITIVE_AMOUNT, f"amount_minor {amount} is not positive")
    if amount > spec.max_amount_minor:
        raise RejectError(
            Reason.QUANTITY_ABOVE_LIMIT,
            f"amount_minor {amount} exceeds {spec.max_amount_minor} for {kind}",
        )
    del reference  # checked above; kept on the event, not in the obligation's key (batch.py)
    return PricedInput(
        "PAYMENT", event_id, payer_id, payee_id, currency, amount, PRICE_SCALE, "",
        spec.priority, None, reported_ms,
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


def validate_events(
    cases: Sequence[Case], refdata: ReferenceData, limits: ValidationLimits
) -> None:
    """Fill in the facts to price of each identified case, or why the rules refuse it
    (with the producer, where its signature verified). The Kafka log time of each
    record is its reference time."""
    for case in cases:
        if not case.identified:
            continue
        now_ms = case.event.timestamp_ms
        checked = validate_event(case.name, case.record, refdata, reference_time_ms=now_ms,
                                 limits=limits)  # fmt: skip
        if isinstance(checked, Rejection):
            case.refused = Refused(checked.reason_code, checked.message, case.event_id,
                                   case.hint, case.principal)  # fmt: skip
        else:
            case.checked = checked
