"""The embedded default data set: committed file == generator output, and it
looks like the market it claims to be."""

from __future__ import annotations

from collections import Counter

import pytest

from clearing_core.money import INT64_MAX
from clearing_core.refdata import (
    DEFAULT_REFDATA_PATH,
    ExportFormat,
    ParticipantRole,
    PaymentKind,
    ReferenceData,
    SettlementModel,
    load_default_refdata,
    parse_refdata,
)
from clearing_core.refdata.codes import bic_is_valid, lei_is_valid
from clearing_core.refdata.scenario import (
    SCENARIO_SEED,
    build_default_refdata,
    default_refdata_yaml,
)


@pytest.fixture(scope="module")
def default() -> ReferenceData:
    return load_default_refdata()


def test_committed_file_is_the_generator_output() -> None:
    committed = DEFAULT_REFDATA_PATH.read_text(encoding="utf-8")
    assert committed == default_refdata_yaml(), (
        "default.yaml is stale: run `python -m clearing_core.refdata.scenario`"
    )


def test_generator_is_deterministic_and_seeded() -> None:
    assert build_default_refdata(SCENARIO_SEED) == build_default_refdata(SCENARIO_SEED)
    other = parse_refdata(build_default_refdata(SCENARIO_SEED + 1))
    assert other.digest != load_default_refdata().digest


def test_counts_by_role(default: ReferenceData) -> None:
    roles = Counter(role for p in default.participants.values() for role in p.roles)
    assert 250 <= len(default.participants) <= 400
    assert roles[ParticipantRole.GENERATOR] >= 100
    assert roles[ParticipantRole.DATA_CENTRE] >= 30
    assert roles[ParticipantRole.UTILITY] >= 8
    assert roles[ParticipantRole.AI_LAB] >= 20
    assert roles[ParticipantRole.GPU_CLOUD] >= 10
    assert roles[ParticipantRole.AI_PROVIDER] >= 10
    for role in (ParticipantRole.LESSOR, ParticipantRole.OM_CONTRACTOR, ParticipantRole.EPC,
                 ParticipantRole.BANK):  # fmt: skip
        assert roles[role] >= 5, role
    ids = set(default.participants)
    expected = {
        "SOLAR-QINGHAI-07", "DC-SHENZHEN-01", "GPUCLOUD-SG-02", "AILAB-HK-03",
        "WIND-INNERMONGOLIA-01", "SOLAR-GANSU-01", "DC-VIRGINIA-01", "DC-SINGAPORE-01",
        "DC-HONGKONG-01", "DC-SHANGHAI-01", "BANK-HK-01",
    }  # fmt: skip
    assert expected <= ids


def test_currencies_and_rails(default: ReferenceData) -> None:
    assert {"CNH", "USD"} <= set(default.currencies)
    assert default.currency("CNH").iso_code == "CNY"
    assert len(default.rails) >= 4
    stable = default.rails["cnh-stable"]
    assert (stable.currency, stable.decimals, stable.model, stable.export_format,
            stable.token_symbol) == ("CNH", 6, SettlementModel.DIRECT,
                                     ExportFormat.TOKEN_BATCH, "CNHT")  # fmt: skip
    cips = default.rails["cnh-cips"]
    assert (cips.decimals, cips.model, cips.export_format) == (
        2, SettlementModel.HUB, ExportFormat.ISO20022)  # fmt: skip
    assert default.rails["usd-stable"].token_symbol == "USDC"
    assert default.rails["usd-swift"].model is SettlementModel.HUB
    for rail in default.rails.values():
        assert 30 <= rail.cycle_seconds <= 120


def test_identifiers_are_well_formed(default: ReferenceData) -> None:
    participants = list(default.participants.values())
    with_lei = [p for p in participants if p.lei is not None]
    assert len(with_lei) >= 0.9 * len(participants)
    assert all(p.lei is not None and lei_is_valid(p.lei) for p in with_lei)
    assert all(p.bic is not None and bic_is_valid(p.bic) for p in participants)
    assert len({p.lei for p in with_lei}) == len(with_lei)
    banks = {p.bic for p in participants if ParticipantRole.BANK in p.roles}
    assert {p.bic for p in participants} <= banks  # everyone banks with a settlement bank


def test_caps_on_about_a_fifth_of_participants(default: ReferenceData) -> None:
    participants = list(default.participants.values())
    capped = [p for p in participants if any(a.net_debit_cap_minor is not None for a in p.accounts)]
    assert 0.15 <= len(capped) / len(participants) <= 0.25
    assert all(a.net_debit_cap_minor is None or a.net_debit_cap_minor > 0
               for p in participants for a in p.accounts)  # fmt: skip
    two_currencies = [p for p in participants if len(p.accounts) >= 2]
    assert len(two_currencies) >= 50


def test_contracts_look_like_ppas(default: ReferenceData) -> None:
    contracts = list(default.contracts.values())
    assert len(contracts) >= 200
    with_bands = [c for c in contracts if c.tou_bands]
    assert 0.25 <= len(with_bands) / len(contracts) <= 0.65
    for c in contracts:
        assert len(c.meter_ids) >= 2
        assert c.capacity_kw is not None
        if c.currency == "CNH":
            assert 25_000 <= c.tariff_minor_per_mwh <= 45_000  # 250-450 yuan/MWh
        elif c.currency == "USD":
            assert 4_000 <= c.tariff_minor_per_mwh <= 9_000  # $40-90/MWh
        seller = default.participants[c.seller_id]
        assert seller.roles[0] in {ParticipantRole.GENERATOR, ParticipantRole.UTILITY}
    sellers = {default.participants[c.seller_id].participant_id.split("-")[1] for c in contracts}
    assert {"QINGHAI", "GANSU", "INNERMONGOLIA"} <= sellers


def test_price_books_and_payment_kinds(default: ReferenceData) -> None:
    skus = {e.sku for b in default.price_books.values() for e in b.entries}
    assert skus == {"api_call", "input_token", "output_token", "gpu_second", "inference_second",
                    "vector_storage_gb_hour"}  # fmt: skip
    for book in default.price_books.values():
        provider = default.participants[book.provider_id]
        assert set(provider.roles) & {ParticipantRole.GPU_CLOUD, ParticipantRole.AI_PROVIDER}
        for entry in book.entries:
            assert entry.max_quantity_per_event * entry.price_minor_per_million < INT64_MAX
    usd_gpu = [e.price_minor_per_million for b in default.price_books.values()
               if b.currency == "USD" for e in b.entries if e.sku == "gpu_second"]  # fmt: skip
    assert all(50_000 <= p <= 97_222 for p in usd_gpu)  # $1.80-3.50 per GPU-hour
    kinds = {k.kind: k for k in default.payment_kinds.values()}
    assert set(kinds) == set(PaymentKind)
    assert kinds[PaymentKind.FINANCE_LEASE_RENT].priority > kinds[PaymentKind.TRANSFER].priority
    assert kinds[PaymentKind.ELECTRICITY_BILL].priority > kinds[PaymentKind.TRANSFER].priority
