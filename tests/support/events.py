"""The records the tests send, built in one place: one builder per record type, each
valid as it stands under tests/data/pipeline-refdata.yaml (and the bad-input corpus's
data, which extends it) for the time ``at``, now by default. A test names only what it
changes: a value, a time, or the parties of another data set (the dicts below, with
``functools.partial`` for a module's own defaults)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

# The parties of clearing_core's default reference data set (load_default_refdata).
DEFAULT_DATA_METER = {"reporter_id": "SOLAR-QINGHAI-01", "contract_id": "PPA-CN-0001",
                      "meter_id": "MTR-SOLAR-QINGHAI-01-01"}  # fmt: skip
DEFAULT_DATA_USAGE = {"reporter_id": "AIAPI-BJ-01", "provider_id": "AIAPI-BJ-01",
                      "customer_id": "DC-GUIAN-04", "price_book_id": "PB-AIAPI-BJ-01-CNH",
                      "sku": "api_call", "quantity": 10, "model": None}  # fmt: skip


def now() -> datetime:
    """Now to the second, as the tests' events carry it."""
    return datetime.now(UTC).replace(microsecond=0)


def meter_reading(
    event_id: str = "m-1", energy_wh: int = 1_000_000, *, at: datetime | None = None,
    **changes: Any,
) -> dict[str, Any]:  # fmt: skip
    """The seller's reading of the quarter hour ending ``at``, reported then: under the
    test data's PPA (SOLAR-QINGHAI-07 to DC-SHENZHEN-01) 35,000 fen per MWh."""
    end = at or now()
    record = {"event_id": event_id, "reporter_id": "SOLAR-QINGHAI-07",
              "contract_id": "PPA-QH07-SZ01", "meter_id": "MTR-QH07-01",
              "interval_start": end - timedelta(minutes=15), "interval_end": end,
              "energy_wh": energy_wh, "reading_quality": "ACTUAL", "reported_at": end}  # fmt: skip
    return record | changes


def compute_usage(
    event_id: str = "c-1", quantity: int = 1_000_000, *, at: datetime | None = None,
    **changes: Any,
) -> dict[str, Any]:  # fmt: skip
    """Output tokens of the minute ending ``at``, reported then by the provider
    (GPUCLOUD-SG-02 to DC-SHENZHEN-01: 10 USD a million)."""
    end = at or now()
    record = {"event_id": event_id, "reporter_id": "GPUCLOUD-SG-02",
              "provider_id": "GPUCLOUD-SG-02", "customer_id": "DC-SHENZHEN-01",
              "price_book_id": "PB-GPUCLOUD-SG-02", "sku": "output_token", "quantity": quantity,
              "model": "llm-70b", "usage_start": end - timedelta(minutes=1), "usage_end": end,
              "reported_at": end}  # fmt: skip
    return record | changes


def payment(
    event_id: str = "p-1", payer: str = "DC-SHENZHEN-01", payee: str = "LEASECO-HK-01",
    kind: str = "FINANCE_LEASE_RENT", amount_minor: int = 120_000, *,
    at: datetime | None = None, **changes: Any,
) -> dict[str, Any]:  # fmt: skip
    """A CNH payment the payer reports at ``at``, for value that day."""
    moment = at or now()
    record = {"event_id": event_id, "reporter_id": payer, "payer_id": payer, "payee_id": payee,
              "kind": kind, "currency": "CNH", "amount_minor": amount_minor, "reference": None,
              "value_date": moment.date(), "reported_at": moment}  # fmt: skip
    return record | changes


def settlement_ack(
    batch: Mapping[str, Any], instruction: Mapping[str, Any], status: str, *,
    at: datetime | None = None, **changes: Any,
) -> dict[str, Any]:  # fmt: skip
    """A bank's word on one instruction of a batch (a failure with reason AM04,
    insufficient funds)."""
    record = {"batch_id": batch["batch_id"], "rail_id": batch["rail_id"],
              "instruction_id": instruction["instruction_id"], "status": status,
              "reason_code": "AM04" if status == "FAILED" else None, "reason": None,
              "bank_id": "BANK-1", "bank_reference": None, "acked_at": at or now(),
              "transaction_hash": None, "block_number": None}  # fmt: skip
    return record | changes
