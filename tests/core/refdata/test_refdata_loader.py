"""The YAML loader: every validation rule has a broken document and the exact
one-line message it must produce (section, record id, field, reason)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from clearing_core.errors import InputError
from clearing_core.refdata import (
    PAYMENT_AMOUNT_MAX,
    RefdataError,
    dump_refdata_yaml,
    load_refdata,
    parse_refdata,
)
from clearing_core.refdata.codes import lei_check_digits, lei_is_valid
from tests.core.fixtures import base_document, find

Doc = dict[str, Any]


def _participant(pid: str) -> Callable[[Doc], dict[str, Any]]:
    return lambda d: find(d, "participants", pid)


def _set(getter: Callable[[Doc], dict[str, Any]], field: str, value: Any) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        getter(doc)[field] = value

    return mutate


def _append(section: str, record_from: str, changes: dict[str, Any]) -> Callable[[Doc], None]:
    """Append a copy of the first record of ``section`` with ``changes``."""

    def mutate(doc: Doc) -> None:
        record = dict(doc[section][0]) if record_from == "first" else {}
        record.update(changes)
        doc[section].append(record)

    return mutate


DC = _participant("DC-SHENZHEN-01")
SOLAR = _participant("SOLAR-QINGHAI-07")


def _contract(doc: Doc) -> dict[str, Any]:
    return find(doc, "contracts", "PPA-0001")


def _book(doc: Doc) -> dict[str, Any]:
    return find(doc, "price_books", "PB-GPUCLOUD-SG-02-USD")


def _rail(rail_id: str) -> Callable[[Doc], dict[str, Any]]:
    return lambda d: find(d, "rails", rail_id)


def _band(index: int) -> Callable[[Doc], dict[str, Any]]:
    return lambda d: _contract(d)["tou_bands"][index]


def _entry(index: int) -> Callable[[Doc], dict[str, Any]]:
    return lambda d: _book(d)["entries"][index]


def _dc_account(index: int) -> Callable[[Doc], dict[str, Any]]:
    return lambda d: DC(d)["accounts"][index]


BROKEN: list[tuple[str, Callable[[Doc], None], str]] = [
    # Unique ids.
    ("dup-participant", _append("participants", "first", {}),
     "participants[SOLAR-QINGHAI-07]: duplicate participant_id"),
    ("dup-rail", _append("rails", "first", {}), "rails[cnh-stable]: duplicate rail_id"),
    ("dup-currency", _append("currencies", "first", {}), "currencies[CNH]: duplicate code"),
    ("dup-contract", _append("contracts", "first", {"meter_ids": ["MTR-X"]}),
     "contracts[PPA-0001]: duplicate contract_id"),
    ("dup-book", _append("price_books", "first", {}),
     "price_books[PB-GPUCLOUD-SG-02-USD]: duplicate price_book_id"),
    ("dup-kind", _append("payment_kinds", "first", {}),
     "payment_kinds[FINANCE_LEASE_RENT]: duplicate kind"),
    # Currencies and rails.
    ("currency-without-rail", _append("currencies", "none", {
        "code": "EUR", "iso_code": "EUR", "minor_exponent": 2, "name": "Euro",
        "obligation_partition": 3}),
     "currencies[EUR]: no rail settles EUR"),
    ("partition-missing", _set(lambda d: d["currencies"][0], "obligation_partition", None),
     "currencies[CNH].obligation_partition: missing (each currency names its own partition "
     "of clearing.obligations: docs/refdata.md)"),
    ("partition-shared", _set(lambda d: d["currencies"][1], "obligation_partition", 0),
     "currencies[USD].obligation_partition: 0 is already CNH's"),
    ("partition-range", _set(lambda d: d["currencies"][0], "obligation_partition", 1_024),
     "currencies[CNH].obligation_partition: Input should be less than 1024 (got 1024)"),
    ("currency-code", _set(lambda d: d["currencies"][0], "iso_code", "cny"),
     "currencies[CNH].iso_code: 'cny' is not a 3-letter currency code"),
    ("exponent-range", _set(lambda d: d["currencies"][0], "minor_exponent", 10),
     "currencies[CNH].minor_exponent: Input should be less than or equal to 9 (got 10)"),
    ("rail-currency", _set(_rail("usd-swift"), "currency", "EUR"),
     "rails[usd-swift].currency: unknown currency 'EUR'"),
    ("rail-decimals", _set(_rail("cnh-cips"), "decimals", 1),
     "rails[cnh-cips].decimals: 1 is below the minor exponent 2 of CNH "
     "(conversion would lose value)"),
    ("cycle-zero", _set(_rail("cnh-cips"), "cycle_seconds", 0),
     "rails[cnh-cips].cycle_seconds: Input should be greater than or equal to 1 (got 0)"),
    ("cycle-too-long", _set(_rail("cnh-cips"), "cycle_seconds", 86_401),
     "rails[cnh-cips].cycle_seconds: Input should be less than or equal to 86400 (got 86401)"),
    ("token-symbol", _set(_rail("cnh-stable"), "token_symbol", None),
     "rails[cnh-stable].token_symbol: required on a TOKEN_BATCH rail"),
    # Token rails and chain addresses (docs/refdata.md, docs/settlement.md).
    ("token-rail-chain", _set(_rail("cnh-stable"), "chain", None),
     "rails[cnh-stable].chain: required on a TOKEN_BATCH rail ('embedded' or a JSON-RPC URL)"),
    ("token-rail-chain-url", _set(_rail("cnh-stable"), "chain", "ftp://node.example"),
     "rails[cnh-stable].chain: 'ftp://node.example' is neither 'embedded' nor a JSON-RPC URL"),
    ("token-rail-url-contracts", _set(_rail("cnh-stable"), "chain", "https://rpc.example/v1"),
     "rails[cnh-stable].token_address: required on a chain given by URL"),
    ("token-rail-house", _set(_rail("cnh-stable"), "clearing_house_address", None),
     "rails[cnh-stable].clearing_house_address: required on a TOKEN_BATCH rail"),
    ("address-checksum", _set(DC, "chain_address", "0x598a35f1cc71cb56c099dd91a060e53544015efa"),
     "participants[DC-SHENZHEN-01].chain_address: '0x598a35f1cc71cb56c099dd91a060e53544015efa' "
     "fails its EIP-55 checksum (checksummed: 0x598A35F1CC71Cb56C099Dd91A060E53544015efA)"),
    ("address-short", _set(DC, "chain_address", "0x598A35F1"),
     "participants[DC-SHENZHEN-01].chain_address: '0x598A35F1' is not a 20-byte hex address"),
    ("address-unquoted", _set(DC, "chain_address", 0x598A35F1),
     "participants[DC-SHENZHEN-01].chain_address: an address must be text: YAML reads an "
     "unquoted 0x... as a number, quote it"),
    ("address-missing", lambda d: DC(d).pop("chain_address"),
     "participants[DC-SHENZHEN-01].chain_address: required for token rail 'cnh-stable'"),
    ("address-shared", lambda d: DC(d).update(chain_address=find(d, "participants",
                                              "AILAB-HK-03")["chain_address"]),
     "is already the address of 'DC-SHENZHEN-01'"),
    ("ack-timeout", _set(_rail("cnh-cips"), "ack_timeout_seconds", 0),
     "rails[cnh-cips].ack_timeout_seconds: Input should be greater than or equal to 1"),
    ("rail-model", _set(_rail("cnh-cips"), "model", "NETTED"),
     "rails[cnh-cips].model: Input should be 'HUB' or 'DIRECT' (got 'NETTED')"),
    ("rail-id-topic-safe", _set(_rail("cnh-cips"), "rail_id", "cnh.cips"),
     "rails[cnh.cips].rail_id: 'cnh.cips' is not a rail id"),
    ("house-account-clash", _set(_rail("usd-swift"), "clearing_house_account",
                                 "SOLAR-QINGHAI-07"),
     "participants[SOLAR-QINGHAI-07]: id is the clearing house account of rail 'usd-swift'"),
    # Participants and accounts.
    ("account-wrong-currency", _set(_dc_account(0), "rail_id", "usd-swift"),
     "participants[DC-SHENZHEN-01].accounts[CNH]: rail 'usd-swift' settles USD, not CNH"),
    ("account-unknown-rail", _set(_dc_account(0), "rail_id", "cnh-nowhere"),
     "participants[DC-SHENZHEN-01].accounts[CNH]: unknown rail 'cnh-nowhere'"),
    ("account-unknown-currency", _set(_dc_account(1), "currency", "JPY"),
     "participants[DC-SHENZHEN-01].accounts[JPY]: unknown currency 'JPY'"),
    ("account-twice", _set(_dc_account(1), "currency", "CNH"),
     "participants[DC-SHENZHEN-01].accounts[CNH]: second account in CNH (one per currency)"),
    ("negative-cap", _set(_dc_account(0), "net_debit_cap_minor", -1),
     "participants[DC-SHENZHEN-01].accounts[CNH].net_debit_cap_minor: Input should be "
     "greater than or equal to 0 (got -1)"),
    ("float-cap", _set(_dc_account(0), "net_debit_cap_minor", 12.5),
     "participants[DC-SHENZHEN-01].accounts[CNH].net_debit_cap_minor: Input should be a "
     "valid integer (got 12.5)"),
    ("string-cap", _set(_dc_account(0), "net_debit_cap_minor", "100"),
     "accounts[CNH].net_debit_cap_minor: Input should be a valid integer (got '100')"),
    ("bic-needed", _set(DC, "bic", None),
     "participants[DC-SHENZHEN-01].bic: required for ISO 20022 rail 'usd-swift'"),
    ("bad-bic", _set(DC, "bic", "ABC123"),
     "participants[DC-SHENZHEN-01].bic: 'ABC123' is not an ISO 9362 BIC (8 or 11 chars)"),
    ("bad-lei", _set(SOLAR, "lei", "5493001KJTIIGC8Y1R13"),
     "participants[SOLAR-QINGHAI-07].lei: '5493001KJTIIGC8Y1R13' is not an ISO 17442 LEI"),
    ("bad-country", _set(SOLAR, "country", "China"),
     "participants[SOLAR-QINGHAI-07].country: 'China' is not an ISO 3166 alpha-2 code"),
    ("no-roles", _set(SOLAR, "roles", []),
     "participants[SOLAR-QINGHAI-07].roles: List should have at least 1 item"),
    ("role-twice", _set(SOLAR, "roles", ["GENERATOR", "GENERATOR"]),
     "participants[SOLAR-QINGHAI-07]: a role is listed twice"),
    ("unknown-role", _set(SOLAR, "roles", ["MINER"]),
     "participants[SOLAR-QINGHAI-07].roles[0]: Input should be 'GENERATOR', "),
    ("id-too-long", _set(SOLAR, "participant_id", "P" * 65),
     "participants[0].participant_id: '" + "P" * 65 + "' is not an id"),
    ("id-with-space", _set(SOLAR, "participant_id", "SOLAR QH"),
     "participants[SOLAR QH].participant_id: 'SOLAR QH' is not an id (1-64 of A-Z a-z 0-9 _ . -)"),
    ("id-with-colon", _set(SOLAR, "participant_id", "SOLAR:QH"),
     "participants[SOLAR:QH].participant_id: 'SOLAR:QH' is not an id"),
    ("multi-line-name", _set(SOLAR, "name", "a\nb"),
     "participants[SOLAR-QINGHAI-07].name: must be one non-blank line"),
    ("long-name", _set(SOLAR, "name", "x" * 201),
     "participants[SOLAR-QINGHAI-07].name: String should have at most 200 characters"),
    ("bool-active", _set(SOLAR, "active", "yes"),
     "participants[SOLAR-QINGHAI-07].active: Input should be a valid boolean (got 'yes')"),
    ("typo-field", _set(SOLAR, "acounts", []),
     "participants[SOLAR-QINGHAI-07].acounts: unknown field"),
    ("missing-field", lambda d: SOLAR(d).pop("name"),
     "participants[SOLAR-QINGHAI-07].name: required field is missing"),
    ("missing-id", lambda d: SOLAR(d).pop("participant_id"),
     "participants[0].participant_id: required field is missing"),
    # Contracts.
    ("seller-unknown", _set(_contract, "seller_id", "SOLAR-NOWHERE-01"),
     "contracts[PPA-0001].seller_id: unknown participant 'SOLAR-NOWHERE-01'"),
    ("seller-is-buyer", _set(_contract, "buyer_id", "SOLAR-QINGHAI-07"),
     "contracts[PPA-0001].buyer_id: same participant as seller_id ('SOLAR-QINGHAI-07')"),
    ("buyer-no-account", _set(_contract, "buyer_id", "GPUCLOUD-SG-02"),
     "contracts[PPA-0001].buyer_id: participant 'GPUCLOUD-SG-02' has no CNH account"),
    ("contract-currency", _set(_contract, "currency", "EUR"),
     "contracts[PPA-0001].currency: unknown currency 'EUR'"),
    ("meter-on-two", _set(lambda d: find(d, "contracts", "PPA-0002"), "meter_ids",
                          ["MTR-QH07-02"]),
     "contracts[PPA-0002].meter_ids: meter 'MTR-QH07-02' is already on contract 'PPA-0001'"),
    ("meter-twice", _set(_contract, "meter_ids", ["M-1", "M-2", "M-1"]),
     "contracts[PPA-0001].meter_ids: meter 'M-1' is listed twice"),
    ("no-meters", _set(_contract, "meter_ids", []),
     "contracts[PPA-0001].meter_ids: List should have at least 1 item"),
    ("zero-tariff", _set(_contract, "tariff_minor_per_mwh", 0),
     "contracts[PPA-0001].tariff_minor_per_mwh: Input should be greater than 0 (got 0)"),
    ("band-overlap", _set(_band(1), "start_minute", 400),
     "contracts[PPA-0001].tou_bands[1]: minutes 400..660 overlap tou_bands[0] (0..420)"),
    ("band-reversed", _set(_band(1), "end_minute", 480),
     "contracts[PPA-0001].tou_bands[1]: start_minute 480 is not before end_minute 480 "
     "(split a band that crosses midnight into two)"),
    ("band-past-midnight", _set(_band(1), "end_minute", 1441),
     "contracts[PPA-0001].tou_bands[1].end_minute: Input should be less than or equal to 1440"),
    ("band-negative", _set(_band(0), "start_minute", -1),
     "contracts[PPA-0001].tou_bands[0].start_minute: Input should be greater than or equal to 0"),
    ("band-zero-tariff", _set(_band(0), "tariff_minor_per_mwh", 0),
     "contracts[PPA-0001].tou_bands[0].tariff_minor_per_mwh: Input should be greater than 0"),
    ("too-many-bands", _set(_contract, "tou_bands", [
        {"start_minute": i, "end_minute": i + 1, "tariff_minor_per_mwh": 1} for i in range(49)]),
     "contracts[PPA-0001].tou_bands: List should have at most 48 items"),
    ("validity-reversed", _set(_contract, "valid_to", "2023-01-01T00:00:00Z"),
     "contracts[PPA-0001].valid_to: 2023-01-01T00:00:00Z is not after valid_from "
     "2024-01-01T00:00:00Z"),
    ("naive-timestamp", _set(_contract, "valid_from", "2024-01-01T00:00:00"),
     "contracts[PPA-0001].valid_from: timestamp 2024-01-01T00:00:00 needs a time zone"),
    ("garbage-timestamp", _set(_contract, "valid_from", "soon"),
     "contracts[PPA-0001].valid_from: 'soon' is not an ISO 8601 timestamp"),
    ("offset-range", _set(_contract, "utc_offset_minutes", 900),
     "contracts[PPA-0001].utc_offset_minutes: Input should be less than or equal to 840"),
    ("capacity-zero", _set(_contract, "capacity_kw", 0),
     "contracts[PPA-0001].capacity_kw: Input should be greater than 0 (got 0)"),
    # Price books.
    ("provider-unknown", _set(_book, "provider_id", "GPUCLOUD-XX-01"),
     "price_books[PB-GPUCLOUD-SG-02-USD].provider_id: unknown participant 'GPUCLOUD-XX-01'"),
    ("provider-no-account", _set(_book, "provider_id", "OM-XINING-01"),
     "price_books[PB-GPUCLOUD-SG-02-USD].provider_id: participant 'OM-XINING-01' has no "
     "USD account"),
    ("dup-sku", _set(_entry(1), "sku", "gpu_second"),
     "price_books[PB-GPUCLOUD-SG-02-USD].entries[gpu_second]: duplicate sku"),
    ("zero-price", _set(_entry(0), "price_minor_per_million", 0),
     "price_books[PB-GPUCLOUD-SG-02-USD].entries[gpu_second].price_minor_per_million: "
     "Input should be greater than 0 (got 0)"),
    ("zero-max-quantity", _set(_entry(0), "max_quantity_per_event", 0),
     "entries[gpu_second].max_quantity_per_event: Input should be greater than 0 (got 0)"),
    ("price-overflow", _set(_entry(0), "max_quantity_per_event", 10**15),
     "price_books[PB-GPUCLOUD-SG-02-USD].entries[gpu_second]: max_quantity_per_event * "
     "price_minor_per_million overflows int64"),
    ("no-entries", _set(_book, "entries", []),
     "price_books[PB-GPUCLOUD-SG-02-USD].entries: List should have at least 1 item"),
    ("customer-unknown", _set(_book, "customer_ids", ["AILAB-XX-09"]),
     "price_books[PB-GPUCLOUD-SG-02-USD].customer_ids: unknown participant 'AILAB-XX-09'"),
    ("customer-no-account", _set(_book, "customer_ids", ["OM-XINING-01"]),
     "price_books[PB-GPUCLOUD-SG-02-USD].customer_ids: participant 'OM-XINING-01' has no "
     "USD account"),
    ("customer-is-provider", _set(_book, "customer_ids", ["GPUCLOUD-SG-02"]),
     "price_books[PB-GPUCLOUD-SG-02-USD].customer_ids: 'GPUCLOUD-SG-02' is the provider"),
    ("customer-twice", _set(_book, "customer_ids", ["AILAB-HK-03", "AILAB-HK-03"]),
     "price_books[PB-GPUCLOUD-SG-02-USD].customer_ids: 'AILAB-HK-03' is listed twice"),
    # Payment kinds.
    ("unknown-kind", _set(lambda d: d["payment_kinds"][0], "kind", "BRIBE"),
     "payment_kinds[BRIBE].kind: Input should be 'ELECTRICITY_BILL', 'OM_FEE', "),
    ("kind-max", _set(lambda d: d["payment_kinds"][0], "max_amount_minor", PAYMENT_AMOUNT_MAX + 1),
     f"payment_kinds[FINANCE_LEASE_RENT].max_amount_minor: Input should be less than or equal "
     f"to {PAYMENT_AMOUNT_MAX}"),
    ("kind-zero", _set(lambda d: d["payment_kinds"][1], "max_amount_minor", 0),
     "payment_kinds[ELECTRICITY_BILL].max_amount_minor: Input should be greater than 0"),
    # The document.
    ("no-participants", lambda d: d.update(participants=[]),
     "participants: List should have at least 1 item"),
    ("unknown-section", lambda d: d.update(ledgers=[]), "ledgers: unknown field"),
    ("no-version", lambda d: d.pop("version"), "version: required field is missing"),
    ("section-not-list", lambda d: d.update(rails={"cnh-cips": {}}),
     "rails: Input should be a valid list"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("mutate", "expected"), [(m, e) for _, m, e in BROKEN], ids=[name for name, _, _ in BROKEN]
)
def test_broken_document_names_the_problem(mutate: Callable[[Doc], None], expected: str) -> None:
    doc = base_document()
    mutate(doc)
    with pytest.raises(RefdataError) as caught:
        parse_refdata(doc)
    message = str(caught.value)
    assert message.startswith("refdata: ")
    assert "\n" not in message
    assert any(expected in line for line in caught.value.problems), caught.value.problems
    assert isinstance(caught.value, InputError)


def test_the_base_document_is_valid() -> None:
    refdata = parse_refdata(base_document())
    assert len(refdata.participants) == 8


def test_every_problem_is_reported_with_a_count() -> None:
    doc = base_document()
    DC(doc)["accounts"][0]["rail_id"] = "usd-swift"
    _contract(doc)["seller_id"] = "NOBODY"
    with pytest.raises(RefdataError) as caught:
        parse_refdata(doc)
    assert len(caught.value.problems) == 2
    assert str(caught.value).endswith("(and 1 more problems)")


def test_yaml_text_and_file_give_the_same_snapshot(tmp_path: Path) -> None:
    text = dump_refdata_yaml(base_document())
    path = tmp_path / "refdata.yaml"
    path.write_text(text, encoding="utf-8")
    assert (
        load_refdata(text).digest
        == load_refdata(path).digest
        == parse_refdata(base_document()).digest
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: a\nversion: b\n", "refdata: line 2: duplicate key 'version'"),
        ("version: [unclosed\n", "refdata: line 2: invalid YAML"),
        ("- a\n- b\n", "refdata: the document must be a mapping, got list"),
        ("refdata.yaml", "pass a pathlib.Path to load a file"),
        ("", "refdata: the document must be a mapping, got NoneType"),
        ("!!python/object:os.system {}\n", "invalid YAML"),
    ],
)
def test_bad_yaml_is_one_line(text: str, expected: str) -> None:
    with pytest.raises(RefdataError) as caught:
        load_refdata(text)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_file_is_a_refdata_error(tmp_path: Path) -> None:
    with pytest.raises(RefdataError, match="cannot read"):
        load_refdata(tmp_path / "absent.yaml")


def test_anchor_bomb_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from clearing_core.refdata import loader

    monkeypatch.setattr(loader, "YAML_NODES_MAX", 10_000)
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 6)]
    with pytest.raises(RefdataError, match="more than 10000 nodes"):
        load_refdata("\n".join(lines) + "\n")


def test_timestamps_accept_int_ms_datetimes_and_dates() -> None:
    doc = base_document()
    _contract(doc)["valid_from"] = 1_704_067_200_000
    by_int = parse_refdata(doc)
    doc = yaml.safe_load(dump_refdata_yaml(base_document()))  # YAML timestamps: datetimes
    by_datetime = parse_refdata(doc)
    doc = base_document()
    _contract(doc)["valid_from"] = "2024-01-01T08:00:00+08:00"
    by_offset_text = parse_refdata(doc)
    assert by_int.digest == by_datetime.digest == by_offset_text.digest
    assert by_int.contracts["PPA-0001"].valid_from == 1_704_067_200_000


def test_sub_millisecond_timestamps_are_refused() -> None:
    doc = base_document()
    _contract(doc)["valid_from"] = "2024-01-01T00:00:00.000500Z"
    with pytest.raises(RefdataError, match="finer than a millisecond"):
        parse_refdata(doc)


def test_lei_check_digits_follow_iso_7064() -> None:
    # Published LEIs (GLEIF's own and a well-known bank) pass; one changed digit fails.
    assert lei_is_valid("506700GE1G29325QX363")
    assert lei_is_valid("5493001KJTIIGC8Y1R12")
    assert not lei_is_valid("5493001KJTIIGC8Y1R13")
    assert lei_check_digits("5493001KJTIIGC8Y1R") == "12"
    with pytest.raises(ValueError, match="18 upper-case"):
        lei_check_digits("short")
