"""Validation of decoded events: one clear case per reason code, the facts of
accepted events, the reporter rules, and a record that went through the codec."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any

import pytest

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.errors import InputError
from clearing_core.ingest.batch import PricedInput
from clearing_core.ingest.checks import Reason, Rejection, ValidationLimits
from clearing_core.ingest.price import split_price
from clearing_core.ingest.validate import (
    validate_compute_usage,
    validate_event,
    validate_meter_reading,
    validate_payment,
)
from clearing_core.refdata import ReferenceData, parse_refdata
from tests.core.fixtures import base_document, base_refdata, find, ms
from tests.support import events
from tests.support.events import compute_usage, meter_reading

NOW = datetime(2025, 6, 1, tzinfo=UTC)
NOW_MS = ms("2025-06-01T00:00:00+00:00")
MIN = timedelta(minutes=1)
REF = base_refdata()


meter = partial(meter_reading, event_id="E-1", at=NOW - 15 * MIN, reported_at=NOW - 14 * MIN,
                contract_id="PPA-0001")  # fmt: skip
compute = partial(compute_usage, event_id="C-1", quantity=28_800, at=NOW - MIN,
                  usage_start=NOW - 60 * MIN, customer_id="AILAB-HK-03", model="H100-80G",
                  price_book_id="PB-GPUCLOUD-SG-02-USD", sku="gpu_second")  # fmt: skip
payment = partial(events.payment, event_id="P-1", payee="LESSOR-HK-01", amount_minor=1_250_000,
                  at=NOW - MIN, reference="LEASE-2025-06", value_date=date(2025, 6, 1))  # fmt: skip


def check(record_type: str, record: dict[str, Any], ref: ReferenceData = REF,
          now_ms: int = NOW_MS) -> PricedInput | Rejection:  # fmt: skip
    return validate_event(record_type, record, ref, reference_time_ms=now_ms)


def test_valid_meter_reading() -> None:
    result = check("MeterReading", meter())
    assert result == PricedInput(
        source="METER", event_id="E-1", debtor_id="DC-SHENZHEN-01",
        creditor_id="SOLAR-QINGHAI-07", currency="CNH", quantity=1_000_000, unit_price=35_000,
        carry_key="ppa:PPA-0001", priority=6, contract_id="PPA-0001",
        event_time_ms=NOW_MS - 15 * 60_000,
    )  # fmt: skip
    assert split_price(result.quantity, result.unit_price)[0] == 35_000  # 1 MWh


def test_meter_tariff_follows_the_local_tou_band() -> None:
    result = check(
        "MeterReading",
        meter(interval_start=NOW, interval_end=NOW + 15 * MIN, reported_at=NOW + 15 * MIN),
        now_ms=NOW_MS + 900_000,
    )
    assert isinstance(result, PricedInput)
    assert result.unit_price == 52_000  # 08:00 in UTC+8: peak


def test_buyer_may_report_and_energy_at_capacity_is_accepted() -> None:
    # 10,000 kW for 15 minutes is exactly 2,500,000 Wh.
    result = check("MeterReading", meter(reporter_id="DC-SHENZHEN-01", energy_wh=2_500_000))
    assert isinstance(result, PricedInput)


def test_valid_compute_usage() -> None:
    result = check("ComputeUsage", compute())
    assert result == PricedInput(
        source="COMPUTE", event_id="C-1", debtor_id="AILAB-HK-03",
        creditor_id="GPUCLOUD-SG-02", currency="USD", quantity=28_800, unit_price=69_444,
        carry_key="book:PB-GPUCLOUD-SG-02-USD:AILAB-HK-03", priority=3,
        contract_id="PB-GPUCLOUD-SG-02-USD", event_time_ms=NOW_MS - 60_000,
    )  # fmt: skip
    # An open book (no customer list) takes any holder of a USD account.
    open_book = compute(price_book_id="PB-OPEN-USD", sku="input_token", customer_id="LESSOR-HK-01")
    assert isinstance(check("ComputeUsage", open_book), PricedInput)


def test_valid_payment() -> None:
    result = check("Payment", payment())
    assert result == PricedInput(
        source="PAYMENT", event_id="P-1", debtor_id="DC-SHENZHEN-01", creditor_id="LESSOR-HK-01",
        currency="CNH", quantity=1_250_000, unit_price=1_000_000, carry_key="", priority=8,
        contract_id=None, event_time_ms=NOW_MS - 60_000,  # the reference is not a key
    )  # fmt: skip
    assert split_price(result.quantity, result.unit_price) == (1_250_000, 0)


def test_utilities_may_report_the_bills_they_issue() -> None:
    bill = payment(kind="ELECTRICITY_BILL", payee_id="UTIL-GUANGDONG-01",
                   reporter_id="UTIL-GUANGDONG-01")  # fmt: skip
    result = check("Payment", bill)
    assert isinstance(result, PricedInput)
    assert (result.debtor_id, result.creditor_id, result.priority) == (
        "DC-SHENZHEN-01", "UTIL-GUANGDONG-01", 7)  # fmt: skip
    # ... but a payee may not claim any other kind of payment.
    fee = payment(kind="OM_FEE", payee_id="UTIL-GUANGDONG-01", reporter_id="UTIL-GUANGDONG-01")
    rejected = check("Payment", fee)
    assert isinstance(rejected, Rejection)
    assert rejected.reason_code == "REPORTER_NOT_PARTY"


def _variant(change: Any) -> ReferenceData:
    doc = base_document()
    change(doc)
    return parse_refdata(doc)


DAY = 24 * 60 * MIN
OLD = NOW - 36 * DAY
CASES: list[tuple[str, str, dict[str, Any], Reason]] = [
    # Meter readings.
    ("meter-empty", "MeterReading", {"reporter_id": ""}, Reason.EMPTY_FIELD),
    ("meter-long-id", "MeterReading", {"meter_id": "M" * 65}, Reason.FIELD_TOO_LONG),
    ("meter-long-event", "MeterReading", {"event_id": "E" * 129}, Reason.FIELD_TOO_LONG),
    ("meter-empty-interval", "MeterReading", {"interval_end": NOW - 30 * MIN},
     Reason.BAD_INTERVAL),
    ("meter-reversed", "MeterReading", {"interval_end": NOW - 31 * MIN}, Reason.BAD_INTERVAL),
    ("meter-too-long", "MeterReading", {"interval_start": NOW - 2 * DAY}, Reason.BAD_INTERVAL),
    ("meter-future", "MeterReading", {"interval_end": NOW + 6 * MIN},
     Reason.TIMESTAMP_IN_FUTURE),
    ("meter-reported-future", "MeterReading", {"reported_at": NOW + 6 * MIN},
     Reason.TIMESTAMP_IN_FUTURE),
    ("meter-old", "MeterReading", {"interval_start": OLD, "interval_end": OLD + 15 * MIN},
     Reason.TIMESTAMP_TOO_OLD),
    ("meter-contract", "MeterReading", {"contract_id": "PPA-9999"}, Reason.UNKNOWN_CONTRACT),
    ("meter-unknown", "MeterReading", {"meter_id": "MTR-NONE"}, Reason.UNKNOWN_METER),
    ("meter-other-contract", "MeterReading", {"meter_id": "MTR-QH07-03"},
     Reason.METER_NOT_ON_CONTRACT),
    ("meter-reporter-unknown", "MeterReading", {"reporter_id": "NOBODY"},
     Reason.UNKNOWN_PARTICIPANT),
    ("meter-reporter-stranger", "MeterReading", {"reporter_id": "AILAB-HK-03"},
     Reason.REPORTER_NOT_PARTY),
    ("meter-negative", "MeterReading", {"energy_wh": -1}, Reason.NEGATIVE_QUANTITY),
    ("meter-above-capacity", "MeterReading", {"energy_wh": 2_500_001},
     Reason.QUANTITY_ABOVE_LIMIT),
    ("meter-overflow", "MeterReading", {"contract_id": "PPA-0002", "meter_id": "MTR-QH07-03",
                                        "energy_wh": 10**15}, Reason.QUANTITY_ABOVE_LIMIT),
    # Compute usage.
    ("compute-empty-sku", "ComputeUsage", {"sku": ""}, Reason.EMPTY_FIELD),
    ("compute-long-sku", "ComputeUsage", {"sku": "s" * 65}, Reason.FIELD_TOO_LONG),
    ("compute-long-model", "ComputeUsage", {"model": "m" * 257}, Reason.FIELD_TOO_LONG),
    ("compute-window", "ComputeUsage", {"usage_start": NOW - 2 * DAY}, Reason.BAD_INTERVAL),
    ("compute-book", "ComputeUsage", {"price_book_id": "PB-NONE"}, Reason.UNKNOWN_PRICE_BOOK),
    ("compute-book-of-other", "ComputeUsage",
     {"provider_id": "AILAB-HK-03", "reporter_id": "AILAB-HK-03",
      "customer_id": "DC-SHENZHEN-01"}, Reason.UNKNOWN_PRICE_BOOK),
    ("compute-reporter", "ComputeUsage", {"reporter_id": "AILAB-HK-03"},
     Reason.REPORTER_NOT_PARTY),
    ("compute-reporter-unknown", "ComputeUsage", {"reporter_id": "NOBODY"},
     Reason.UNKNOWN_PARTICIPANT),
    ("compute-customer-unknown", "ComputeUsage", {"customer_id": "NOBODY"},
     Reason.UNKNOWN_PARTICIPANT),
    ("compute-self", "ComputeUsage", {"customer_id": "GPUCLOUD-SG-02"}, Reason.SELF_PAYMENT),
    ("compute-inactive", "ComputeUsage", {"customer_id": "AILAB-SF-05"},
     Reason.INACTIVE_PARTICIPANT),
    ("compute-sku", "ComputeUsage", {"sku": "tpu_second"}, Reason.UNKNOWN_SKU),
    ("compute-customer", "ComputeUsage", {"customer_id": "LESSOR-HK-01"},
     Reason.CUSTOMER_NOT_ALLOWED),
    ("compute-currency", "ComputeUsage", {"price_book_id": "PB-OPEN-USD", "sku": "input_token",
                                          "customer_id": "OM-XINING-01"},
     Reason.CURRENCY_NOT_ALLOWED),
    ("compute-negative", "ComputeUsage", {"quantity": -1}, Reason.NEGATIVE_QUANTITY),
    ("compute-limit", "ComputeUsage", {"quantity": 100_000_001}, Reason.QUANTITY_ABOVE_LIMIT),
    ("compute-old", "ComputeUsage", {"reported_at": OLD}, Reason.TIMESTAMP_TOO_OLD),
    # Payments.
    ("payment-empty-currency", "Payment", {"currency": ""}, Reason.EMPTY_FIELD),
    ("payment-long-reference", "Payment", {"reference": "R" * 257}, Reason.FIELD_TOO_LONG),
    ("payment-future", "Payment", {"reported_at": NOW + 6 * MIN}, Reason.TIMESTAMP_IN_FUTURE),
    ("payment-old", "Payment", {"reported_at": OLD}, Reason.TIMESTAMP_TOO_OLD),
    ("payment-currency", "Payment", {"currency": "EUR"}, Reason.UNKNOWN_CURRENCY),
    ("payment-payee", "Payment", {"payee_id": "NOBODY"}, Reason.UNKNOWN_PARTICIPANT),
    ("payment-self", "Payment", {"payee_id": "DC-SHENZHEN-01"}, Reason.SELF_PAYMENT),
    ("payment-payee-reports", "Payment", {"reporter_id": "LESSOR-HK-01"},
     Reason.REPORTER_NOT_PARTY),
    ("payment-stranger-bill", "Payment",
     {"kind": "ELECTRICITY_BILL", "reporter_id": "OM-XINING-01"}, Reason.REPORTER_NOT_PARTY),
    ("payment-inactive", "Payment", {"currency": "USD", "payee_id": "AILAB-SF-05"},
     Reason.INACTIVE_PARTICIPANT),
    ("payment-no-account", "Payment", {"currency": "USD", "payee_id": "OM-XINING-01"},
     Reason.CURRENCY_NOT_ALLOWED),
    ("payment-payer-no-account", "Payment", {"payer_id": "OM-XINING-01",
                                             "reporter_id": "OM-XINING-01", "currency": "USD"},
     Reason.CURRENCY_NOT_ALLOWED),
    ("payment-zero", "Payment", {"amount_minor": 0}, Reason.NON_POSITIVE_AMOUNT),
    ("payment-negative", "Payment", {"amount_minor": -5}, Reason.NON_POSITIVE_AMOUNT),
    ("payment-limit", "Payment", {"amount_minor": 2_000_000_001}, Reason.QUANTITY_ABOVE_LIMIT),
]  # fmt: skip


@pytest.mark.parametrize(
    ("record_type", "changes", "reason"),
    [(t, c, r) for _, t, c, r in CASES],
    ids=[name for name, _, _, _ in CASES],
)
def test_each_rejection(record_type: str, changes: dict[str, Any], reason: Reason) -> None:
    base = {"MeterReading": meter, "ComputeUsage": compute, "Payment": payment}[record_type]
    result = check(record_type, base(**changes))
    assert isinstance(result, Rejection), result
    assert result.reason_code == reason
    assert result.message
    assert "\n" not in result.message
    assert result.event_id == base()["event_id"] or "event_id" in changes


def test_inactive_party_of_a_contract() -> None:
    ref = _variant(lambda d: find(d, "participants", "DC-SHENZHEN-01").update(active=False))
    result = check("MeterReading", meter(), ref)
    assert isinstance(result, Rejection)
    assert result.reason_code == "INACTIVE_PARTICIPANT"
    assert result.message == "'DC-SHENZHEN-01' is inactive"


def test_contract_not_valid_before_it_starts() -> None:
    start = datetime(2023, 12, 31, 23, 30, tzinfo=UTC)
    record = meter(interval_start=start, interval_end=start + 15 * MIN,
                   reported_at=start + 15 * MIN)  # fmt: skip
    result = check("MeterReading", record, now_ms=ms("2023-12-31T23:50:00+00:00"))
    assert isinstance(result, Rejection)
    assert result.reason_code == "CONTRACT_NOT_VALID_AT"


def test_unknown_payment_kind() -> None:
    ref = _variant(lambda d: d["payment_kinds"].pop())  # TRANSFER is not offered
    result = check("Payment", payment(kind="TRANSFER"), ref)
    assert isinstance(result, Rejection)
    assert result.reason_code == "UNKNOWN_PAYMENT_KIND"


def test_messages_say_what_is_wrong() -> None:
    result = check("MeterReading", meter(meter_id="MTR-QH07-03"))
    assert isinstance(result, Rejection)
    assert result.message == "meter 'MTR-QH07-03' is on contract 'PPA-0002', not 'PPA-0001'"
    result = check("MeterReading", meter(energy_wh=2_500_001))
    assert isinstance(result, Rejection)
    assert result.message == (
        "energy_wh 2500001 exceeds capacity 10000 kW over 900000 ms (2500000 Wh)"
    )


def test_limits_are_passed_in() -> None:
    strict = ValidationLimits(max_age_ms=10 * 60_000, max_future_skew_ms=0)
    result = validate_meter_reading(meter(), REF, reference_time_ms=NOW_MS, limits=strict)
    assert isinstance(result, Rejection)
    assert result.reason_code == "TIMESTAMP_TOO_OLD"
    recent = compute(usage_start=NOW - 5 * MIN)
    ok = validate_compute_usage(recent, REF, reference_time_ms=NOW_MS, limits=strict)
    assert isinstance(ok, PricedInput)
    late = validate_payment(payment(reported_at=NOW + MIN), REF, reference_time_ms=NOW_MS,
                            limits=strict)  # fmt: skip
    assert isinstance(late, Rejection)
    assert late.reason_code == "TIMESTAMP_IN_FUTURE"


def test_int_millisecond_timestamps_are_accepted() -> None:
    record = meter(interval_start=NOW_MS - 30 * 60_000, interval_end=NOW_MS - 15 * 60_000,
                   reported_at=NOW_MS - 14 * 60_000)  # fmt: skip
    assert check("MeterReading", record) == check("MeterReading", meter())


def test_unknown_record_type_is_a_caller_error() -> None:
    with pytest.raises(InputError, match="no validation for record type 'Obligation'"):
        check("Obligation", {})


def test_records_through_the_codec(codec: SingleObjectCodec) -> None:
    for name, record in [("MeterReading", meter()), ("ComputeUsage", compute()),
                         ("Payment", payment())]:  # fmt: skip
        decoded = codec.decode(codec.encode(name, record))
        assert isinstance(decoded.record["reported_at"], datetime)
        result = validate_event(f"clearing.{decoded.name}", decoded.record, REF,
                                reference_time_ms=NOW_MS)  # fmt: skip
        assert result == check(name, record)
        assert isinstance(result, PricedInput)


def test_every_reason_code_has_a_case() -> None:
    covered = {reason for _, _, _, reason in CASES}
    covered |= {Reason.INACTIVE_PARTICIPANT, Reason.CONTRACT_NOT_VALID_AT,
                Reason.UNKNOWN_PAYMENT_KIND}  # the dedicated tests above  # fmt: skip
    assert covered == set(Reason)
