"""The embedded default reference data, built by a seeded generator.

Why generated: a realistic set has hundreds of participants and contracts
whose LEIs need computed check digits and whose caps depend on the contracts;
writing it by hand would drift. The output is committed as ``default.yaml``
and a test asserts the file equals ``default_refdata_yaml()``, so the file is
reviewable and the generator stays the single source. Same seed, same bytes:
no clock, no environment, only ``random.Random(seed)``.

Regenerate with ``python -m clearing_core.refdata.scenario``.

Shape: provincial grids and western solar/wind farms (Qinghai, Gansu, Inner
Mongolia, Ningxia, Xinjiang; Texas and Virginia) sell under PPAs to data
centres, utilities and manufacturers; GPU clouds, AI API providers and some AI
labs sell compute from price books; lessors, O&M contractors and EPCs are paid
by payments; settlement banks hold accounts and operate the bank rails.
Net debit caps sit on about a fifth of the paying participants, sized from
their own contracts (see ``_cap_minor``) so that a cycle carrying about one
15-minute interval per meter mostly settles, and a heavy cycle defers.
"""

from __future__ import annotations

import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from clearing_core.refdata.demo_chain import demo_address, house_key_name
from clearing_core.refdata.loader import DEFAULT_REFDATA_PATH, dump_refdata_yaml
from clearing_core.refdata.scenario_participants import (
    REGIONS,
    Builder,
    add_participants,
    by_prefix,
    currencies_of,
)

SCENARIO_SEED = 20_250_601
SCENARIO_VERSION = "default-2025.1"
CAPPED_SHARE_PERCENT = 20


def _utc(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


def _tou_bands(rng: random.Random, base: int, country: str) -> list[dict[str, int]]:
    """Peak and valley bands as grids publish them (local time)."""
    if country == "US":
        windows = [(0, 360, rng.randint(60, 75)), (960, 1260, rng.randint(140, 170))]
    else:
        peak, valley = rng.randint(130, 160), rng.randint(45, 65)
        solar_valley = rng.randint(60, 80)
        windows = [(0, 420, valley), (480, 660, peak), (660, 840, solar_valley),
                   (1080, 1320, peak)]  # fmt: skip
    return [
        {"start_minute": s, "end_minute": e, "tariff_minor_per_mwh": base * pct // 100}
        for s, e, pct in windows
    ]


def _add_contract(b: Builder, seller: dict[str, Any], buyer: dict[str, Any], currency: str,
                  plant_kw: int) -> None:  # fmt: skip
    rng = b.rng
    region = seller["participant_id"].split("-")[1]
    offset = REGIONS[region][2] if region in REGIONS else 480
    meters = rng.randint(2, 6)
    first = b.meter_counter.get(seller["participant_id"], 0)
    b.meter_counter[seller["participant_id"]] = first + meters
    ranges = {"CNH": (25_000, 45_000), "USD": (4_000, 9_000), "HKD": (90_000, 140_000)}
    low, high = ranges[currency]
    base = rng.randrange(low, high + 1, 50)
    contract: dict[str, Any] = {
        "contract_id": f"PPA-{seller['country']}-{len(b.contracts) + 1:04d}",
        "seller_id": seller["participant_id"],
        "buyer_id": buyer["participant_id"],
        "meter_ids": [f"MTR-{seller['participant_id']}-{first + k + 1:02d}" for k in range(meters)],
        "currency": currency,
        "tariff_minor_per_mwh": base,
    }
    if rng.randrange(100) < 45:
        contract["tou_bands"] = _tou_bands(rng, base, seller["country"])
    # Per-meter capacity: the plant split across its meters, with 10% headroom.
    contract["utc_offset_minutes"] = offset
    contract["capacity_kw"] = -(-plant_kw * 11 // (10 * meters))
    start = _utc(2021, 1, 1) + timedelta(days=rng.randrange(0, 4 * 365))
    contract["valid_from"] = start - timedelta(minutes=offset)  # local midnight
    if rng.randrange(100) >= 10:
        contract["valid_to"] = contract["valid_from"] + timedelta(days=365 * rng.randint(10, 20))
    contract["priority"] = 6
    b.contracts.append(contract)


def _add_contracts(b: Builder) -> None:
    """PPAs: each farm sells to one to three buyers of its currency."""
    cn_buyers = by_prefix(b, "DC-SHENZHEN", "DC-SHANGHAI", "DC-GUIAN", "DC-ULANQAB",
                           "DC-ZHONGWEI", "DC-HONGKONG", "UTIL-GUANGDONG", "UTIL-SHANGHAI",
                           "UTIL-QINGHAI", "UTIL-GANSU", "UTIL-INNERMONGOLIA", "UTIL-GUIZHOU",
                           "MFG-")  # fmt: skip
    us_buyers = by_prefix(b, "DC-VIRGINIA", "UTIL-VIRGINIA", "UTIL-TEXAS")
    for seller in by_prefix(b, "SOLAR-", "WIND-"):
        currency = currencies_of(seller)[0]
        pool = us_buyers if currency == "USD" else cn_buyers
        plant_kw = b.rng.randrange(20_000, 300_001, 5_000)
        buyers = b.rng.sample(pool, b.rng.choice([1, 1, 2, 2, 3]))
        for buyer in sorted(buyers, key=lambda p: str(p["participant_id"])):
            _add_contract(b, seller, buyer, currency, plant_kw // len(buyers))
    # Retail supply where there is no farm: utilities sell to local data centres.
    for utility, prefix, currency in [("UTIL-SINGAPORE-01", "DC-SINGAPORE", "USD"),
                                      ("UTIL-HONGKONG-01", "DC-HONGKONG", "HKD")]:  # fmt: skip
        seller = by_prefix(b, utility)[0]
        for buyer in by_prefix(b, prefix):
            _add_contract(b, seller, buyer, currency, b.rng.randrange(8_000, 40_001, 1_000))


_SKUS: dict[str, tuple[int, int, int]] = {
    # sku: USD cents per million units (low, high), max quantity per event
    "api_call": (20_000, 100_000, 1_000_000),  # $0.20-1.00 per 1,000 calls
    "input_token": (10, 300, 200_000_000),  # $0.10-3.00 per million tokens
    "output_token": (40, 1_500, 50_000_000),  # $0.40-15.00 per million tokens
    "gpu_second": (50_000, 97_222, 100_000_000),  # $1.80-3.50 per GPU-hour
    "inference_second": (40_000, 120_000, 10_000_000),  # $0.0004-0.0012 per second
    "vector_storage_gb_hour": (34_247, 54_795, 50_000_000),  # $0.25-0.40 per GB-month
}
_BOOK_SKUS = {
    "GPUCLOUD": ("gpu_second", "inference_second", "vector_storage_gb_hour"),
    "AIAPI": ("api_call", "input_token", "output_token", "inference_second",
              "vector_storage_gb_hour"),
    "AILAB": ("api_call", "input_token", "output_token"),
}  # fmt: skip
# Minor units of the currency per USD cent, in hundredths (CNH books run cheaper).
_FX_PERCENT = {"USD": (100, 100), "CNH": (400, 720), "HKD": (780, 780)}


def _book(b: Builder, provider: dict[str, Any], currency: str) -> dict[str, Any]:
    kind = provider["participant_id"].split("-")[0]
    entries = []
    for sku in _BOOK_SKUS[kind]:
        low, high, max_quantity = _SKUS[sku]
        fx = b.rng.randint(*_FX_PERCENT[currency])
        price = max(1, b.rng.randint(low, high) * fx // 100)
        entries.append(
            {"sku": sku, "price_minor_per_million": price, "max_quantity_per_event": max_quantity}
        )
    buyers = (
        ("AI_LAB", "AI_PROVIDER")
        if kind == "GPUCLOUD"
        else ("AI_LAB", "AI_PROVIDER", "DATA_CENTRE", "UTILITY", "GENERATOR", "CONSUMER", "LESSOR")
    )
    candidates = [
        p["participant_id"] for p in b.participants
        if p is not provider and currency in currencies_of(p) and set(p["roles"]) & set(buyers)
    ]  # fmt: skip
    customers: list[str] = []
    if b.rng.randrange(100) >= 30 and candidates:  # else open to every account holder
        share = b.rng.randint(30, 70)
        customers = sorted(b.rng.sample(candidates, max(1, len(candidates) * share // 100)))
    book: dict[str, Any] = {
        "price_book_id": f"PB-{provider['participant_id']}-{currency}",
        "provider_id": provider["participant_id"],
        "currency": currency,
        "entries": entries,
    }
    if customers:
        book["customer_ids"] = customers
    book["priority"] = 3
    return book


def _price_books(b: Builder) -> list[dict[str, Any]]:
    books: list[dict[str, Any]] = []
    providers = by_prefix(b, "GPUCLOUD-", "AIAPI-") + [
        p for p in by_prefix(b, "AILAB-") if "AI_PROVIDER" in p["roles"]
    ]
    for provider in providers:
        currencies = currencies_of(provider)
        chosen = [currencies[0]]
        if provider["country"] in {"HK", "SG"}:
            chosen.append("USD" if chosen[0] == "CNH" else "CNH")
        if provider["participant_id"] == "GPUCLOUD-HK-01":
            chosen.append("HKD")
        books.extend(_book(b, provider, c) for c in chosen if c in currencies)
    return books


def _cap_minor(b: Builder, p: dict[str, Any], currency: str) -> int:
    """Energy buyers: 0.3 to 3 times their bill for one 15-minute interval with every
    meter at capacity (a typical interval runs at 20-40% of capacity, so a cycle of
    about one interval per meter mostly settles and a heavy one defers). Others: a
    fixed business-size range per currency."""
    full_interval: int = sum(
        len(c["meter_ids"]) * c["capacity_kw"] * 250 * c["tariff_minor_per_mwh"] // 1_000_000
        for c in b.contracts
        if c["buyer_id"] == p["participant_id"] and c["currency"] == currency
    )
    if full_interval:
        return max(1_000, full_interval * b.rng.randint(3, 30) // 10 // 1_000 * 1_000)
    low, high = {"USD": (500_000, 10_000_000)}.get(currency, (2_000_000, 50_000_000))
    return b.rng.randrange(low, high + 1, 1_000)


def _apply_caps_and_status(b: Builder) -> None:
    payers = [p for p in b.participants if "BANK" not in p["roles"]]
    capped = b.rng.sample(payers, round(len(payers) * CAPPED_SHARE_PERCENT / 100))
    for p in sorted(capped, key=lambda q: str(q["participant_id"])):
        for account in p["accounts"]:
            account["net_debit_cap_minor"] = _cap_minor(b, p, account["currency"])
    # Two participants left the scheme; their events are rejected as INACTIVE_PARTICIPANT.
    for pid in ("SOLAR-XINJIANG-06", "AILAB-SF-05"):
        by_prefix(b, pid)[0]["active"] = False


def _rails(b: Builder) -> list[dict[str, Any]]:
    def operator(country: str) -> str:
        return str(b.banks[country][0]["bic"])

    rails = [
        {"rail_id": "cnh-stable", "name": "Offshore-yuan stablecoin (CNHT) token rail",
         "currency": "CNH", "decimals": 6, "model": "DIRECT", "export_format": "TOKEN_BATCH",
         "cycle_seconds": 30, "token_symbol": "CNHT"},
        {"rail_id": "cnh-cips", "name": "CIPS (Cross-border Interbank Payment System)",
         "currency": "CNH", "decimals": 2, "model": "HUB", "export_format": "ISO20022",
         "cycle_seconds": 60, "operator_bic": operator("CN")},
        {"rail_id": "usd-stable", "name": "USD stablecoin (USDC) token rail",
         "currency": "USD", "decimals": 6, "model": "DIRECT", "export_format": "TOKEN_BATCH",
         "cycle_seconds": 30, "token_symbol": "USDC"},
        {"rail_id": "usd-swift", "name": "SWIFT USD correspondent settlement",
         "currency": "USD", "decimals": 2, "model": "HUB", "export_format": "ISO20022",
         "cycle_seconds": 60, "operator_bic": operator("US")},
        {"rail_id": "hkd-chats", "name": "HKD CHATS (Clearing House Automated Transfer System)",
         "currency": "HKD", "decimals": 2, "model": "HUB", "export_format": "ISO20022",
         "cycle_seconds": 60, "operator_bic": operator("HK")},
    ]  # fmt: skip
    for rail in rails:
        if rail["export_format"] == "TOKEN_BATCH":
            # The embedded chain; its contracts are those `clearing settle --deploy` records.
            rail["chain"] = "embedded"
            rail["clearing_house_address"] = demo_address(house_key_name(str(rail["rail_id"])))
    return rails


def _add_chain_addresses(b: Builder, rails: list[dict[str, Any]]) -> None:
    """Participants on a token rail pay and receive at their demo address."""
    token_rails = {r["rail_id"] for r in rails if r["export_format"] == "TOKEN_BATCH"}
    for p in b.participants:
        if any(a["rail_id"] in token_rails for a in p["accounts"]):
            p["chain_address"] = demo_address(str(p["participant_id"]))


_CURRENCIES = [
    {
        "code": "CNH",
        "iso_code": "CNY",
        "minor_exponent": 2,
        "name": "Chinese yuan (offshore)",
        "obligation_partition": 0,
    },
    {
        "code": "USD",
        "iso_code": "USD",
        "minor_exponent": 2,
        "name": "US dollar",
        "obligation_partition": 1,
    },
    {
        "code": "HKD",
        "iso_code": "HKD",
        "minor_exponent": 2,
        "name": "Hong Kong dollar",
        "obligation_partition": 2,
    },
]
_PAYMENT_KINDS = [
    {"kind": "FINANCE_LEASE_RENT", "description": "Finance-lease rent on solar, wind or GPU "
     "equipment", "priority": 8, "max_amount_minor": 2_000_000_000},
    {"kind": "ELECTRICITY_BILL", "description": "Retail electricity bill from a utility or a "
     "data-centre landlord", "priority": 7, "max_amount_minor": 5_000_000_000},
    {"kind": "OM_FEE", "description": "Operation and maintenance fee for a generation asset",
     "priority": 5, "max_amount_minor": 500_000_000},
    {"kind": "TRANSFER", "description": "Plain transfer between participants", "priority": 1,
     "max_amount_minor": 10_000_000_000},
]  # fmt: skip


def build_default_refdata(seed: int = SCENARIO_SEED) -> dict[str, Any]:
    """The default reference data as plain data (the YAML document's content)."""
    b = Builder(seed)
    add_participants(b)
    _add_contracts(b)
    books = _price_books(b)
    _apply_caps_and_status(b)
    rails = _rails(b)
    _add_chain_addresses(b, rails)
    return {
        "version": SCENARIO_VERSION if seed == SCENARIO_SEED else f"scenario-{seed}",
        "currencies": [dict(c) for c in _CURRENCIES],
        "rails": rails,
        "participants": b.participants,
        "contracts": b.contracts,
        "price_books": books,
        "payment_kinds": [dict(k) for k in _PAYMENT_KINDS],
    }


def default_refdata_yaml(seed: int = SCENARIO_SEED) -> str:
    """``default.yaml`` exactly as committed."""
    header = (
        "Default reference data of the clearing house (format: docs/refdata.md).\n"
        f"Generated by clearing_core.refdata.scenario with seed {seed}; do not edit by hand:\n"
        "change the generator and run `python -m clearing_core.refdata.scenario`."
    )
    return dump_refdata_yaml(build_default_refdata(seed), header=header)


def main(argv: list[str]) -> int:
    """Write ``default.yaml``; with ``--check`` only report whether it is current."""
    text = default_refdata_yaml()
    path = Path(DEFAULT_REFDATA_PATH)
    if "--check" in argv:
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        print(f"{path}: {'up to date' if current == text else 'STALE'}")
        return 0 if current == text else 1
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
