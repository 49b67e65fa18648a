"""A small, valid reference-data document for the core tests, as plain data.

Every test gets a fresh deep copy, breaks one thing and checks the exact
message or reason code; the names echo the default data set.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from clearing_core.refdata import ReferenceData, parse_refdata
from clearing_core.refdata.demo_chain import demo_address, house_key_name


def ms(text: str) -> int:
    """Milliseconds of an ISO 8601 UTC timestamp."""
    moment = datetime.fromisoformat(text)
    assert moment.tzinfo is not None
    return int((moment - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1000)


_BASE: dict[str, Any] = {
    "version": "test-1",
    "currencies": [
        {"code": "CNH", "iso_code": "CNY", "minor_exponent": 2, "name": "Offshore yuan",
         "obligation_partition": 0},
        {"code": "USD", "iso_code": "USD", "minor_exponent": 2, "name": "US dollar",
         "obligation_partition": 1},
    ],
    "rails": [
        {"rail_id": "cnh-stable", "name": "CNH stablecoin", "currency": "CNH", "decimals": 6,
         "model": "DIRECT", "export_format": "TOKEN_BATCH", "cycle_seconds": 30,
         "token_symbol": "CNHT"},
        {"rail_id": "cnh-cips", "name": "CIPS", "currency": "CNH", "decimals": 2,
         "model": "HUB", "export_format": "ISO20022", "cycle_seconds": 60,
         "operator_bic": "CIPSCNSH"},
        {"rail_id": "usd-swift", "name": "SWIFT", "currency": "USD", "decimals": 2,
         "model": "HUB", "export_format": "ISO20022", "cycle_seconds": 120},
    ],
    "participants": [
        {"participant_id": "SOLAR-QINGHAI-07", "name": "Qinghai Golmud Solar Power Co., Ltd.",
         "roles": ["GENERATOR"], "lei": "5493001KJTIIGC8Y1R12", "bic": "ABCDCNSH",
         "country": "CN", "accounts": [{"currency": "CNH", "rail_id": "cnh-cips"}]},
        {"participant_id": "DC-SHENZHEN-01", "name": "Shenzhen Nanshan Data Centre",
         "roles": ["DATA_CENTRE"], "bic": "ABCDCNSZ", "country": "CN",
         "accounts": [
             {"currency": "CNH", "rail_id": "cnh-stable", "net_debit_cap_minor": 5_000_000},
             {"currency": "USD", "rail_id": "usd-swift"}]},
        {"participant_id": "UTIL-GUANGDONG-01", "name": "Guangdong Power Grid Retail",
         "roles": ["UTILITY"], "bic": "ABCDCNSH",
         "accounts": [{"currency": "CNH", "rail_id": "cnh-cips"}]},
        {"participant_id": "GPUCLOUD-SG-02", "name": "Tuas GPU Cloud Pte. Ltd.",
         "roles": ["GPU_CLOUD"], "bic": "ABCDSGSG", "country": "SG",
         "accounts": [{"currency": "USD", "rail_id": "usd-swift"}]},
        {"participant_id": "AILAB-HK-03", "name": "Harbour Intelligence Research Limited",
         "roles": ["AI_LAB"], "bic": "ABCDHKHH", "country": "HK",
         "accounts": [{"currency": "CNH", "rail_id": "cnh-stable"},
                      {"currency": "USD", "rail_id": "usd-swift"}]},
        {"participant_id": "LESSOR-HK-01", "name": "Pearl Financial Leasing Limited",
         "roles": ["LESSOR"], "bic": "ABCDHKHH",
         "accounts": [{"currency": "CNH", "rail_id": "cnh-cips"},
                      {"currency": "USD", "rail_id": "usd-swift"}]},
        {"participant_id": "AILAB-SF-05", "name": "Redwood Intelligence LLC",
         "roles": ["AI_LAB"], "bic": "ABCDUS33", "active": False,
         "accounts": [{"currency": "USD", "rail_id": "usd-swift"}]},
        {"participant_id": "OM-XINING-01", "name": "Xining Renewables O&M Services",
         "roles": ["OM_CONTRACTOR"], "accounts": [{"currency": "CNH", "rail_id": "cnh-stable"}]},
    ],
    "contracts": [
        {"contract_id": "PPA-0001", "seller_id": "SOLAR-QINGHAI-07",
         "buyer_id": "DC-SHENZHEN-01", "meter_ids": ["MTR-QH07-01", "MTR-QH07-02"],
         "currency": "CNH", "tariff_minor_per_mwh": 35_000,
         "tou_bands": [
             {"start_minute": 0, "end_minute": 420, "tariff_minor_per_mwh": 20_000},
             {"start_minute": 480, "end_minute": 660, "tariff_minor_per_mwh": 52_000}],
         "utc_offset_minutes": 480, "capacity_kw": 10_000,
         "valid_from": "2024-01-01T00:00:00Z", "valid_to": "2040-01-01T00:00:00Z",
         "priority": 6},
        {"contract_id": "PPA-0002", "seller_id": "SOLAR-QINGHAI-07",
         "buyer_id": "UTIL-GUANGDONG-01", "meter_ids": ["MTR-QH07-03"], "currency": "CNH",
         "tariff_minor_per_mwh": 30_000},
    ],
    "price_books": [
        {"price_book_id": "PB-GPUCLOUD-SG-02-USD", "provider_id": "GPUCLOUD-SG-02",
         "currency": "USD",
         "entries": [
             {"sku": "gpu_second", "price_minor_per_million": 69_444,
              "max_quantity_per_event": 100_000_000},
             {"sku": "output_token", "price_minor_per_million": 1_000,
              "max_quantity_per_event": 50_000_000}],
         "customer_ids": ["AILAB-HK-03", "DC-SHENZHEN-01", "AILAB-SF-05"], "priority": 3},
        {"price_book_id": "PB-OPEN-USD", "provider_id": "GPUCLOUD-SG-02", "currency": "USD",
         "entries": [{"sku": "input_token", "price_minor_per_million": 150,
                      "max_quantity_per_event": 200_000_000}]},
    ],
    "payment_kinds": [
        {"kind": "FINANCE_LEASE_RENT", "description": "Lease rent", "priority": 8,
         "max_amount_minor": 2_000_000_000},
        {"kind": "ELECTRICITY_BILL", "description": "Electricity bill", "priority": 7,
         "max_amount_minor": 5_000_000_000},
        {"kind": "OM_FEE", "description": "O&M fee", "priority": 5,
         "max_amount_minor": 500_000_000},
        {"kind": "TRANSFER", "description": "Transfer", "priority": 1,
         "max_amount_minor": 10_000_000_000},
    ],
}  # fmt: skip


def with_chain_addresses(doc: dict[str, Any]) -> dict[str, Any]:
    """Token rails on the embedded chain, and demo addresses for the clearing house and
    every participant on a token rail (``refdata/demo_chain.py``), where not given."""
    token_rails = {r["rail_id"] for r in doc["rails"] if r["export_format"] == "TOKEN_BATCH"}
    for rail in doc["rails"]:
        if rail["rail_id"] in token_rails:
            rail.setdefault("chain", "embedded")
            rail.setdefault("clearing_house_address", demo_address(house_key_name(rail["rail_id"])))
    for p in doc["participants"]:
        if any(a["rail_id"] in token_rails for a in p["accounts"]):
            p.setdefault("chain_address", demo_address(p["participant_id"]))
    return doc


with_chain_addresses(_BASE)


def base_document() -> dict[str, Any]:
    """A fresh, mutable copy of the valid test document."""
    return copy.deepcopy(_BASE)


def base_refdata() -> ReferenceData:
    return parse_refdata(base_document())


def find(doc: dict[str, Any], section: str, key: str) -> dict[str, Any]:
    """The record of ``section`` whose id is ``key``."""
    id_field = {
        "currencies": "code", "rails": "rail_id", "participants": "participant_id",
        "contracts": "contract_id", "price_books": "price_book_id", "payment_kinds": "kind",
    }[section]  # fmt: skip
    matches = [r for r in doc[section] if r[id_field] == key]
    assert len(matches) == 1, (section, key)
    return matches[0]
