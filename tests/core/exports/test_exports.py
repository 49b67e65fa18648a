"""Bank exports, pure: pacs.009.001.08 XML parsed back strictly, and token-batch JSON.

pyiso20022 ships xsdata bindings but no XSD files, so beyond the strict parse
(unknown elements or attributes fail) every parsed value is checked against the
facets the bindings carry from the XSD (pattern, length, digits, required)."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

import pytest

from clearing_core import ids
from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.encoding.schemas import SchemaCatalog
from clearing_core.exports import pacs009
from clearing_core.exports.documents import (
    ExportError,
    Identity,
    format_units,
    minor_to_decimal,
    rail_of_batch_id,
    token_batch,
)

CREATED = datetime(2026, 3, 1, 8, 15, 30, 250_000, tzinfo=UTC)
OPERATOR_BIC = "ABCDCNBJ"
LEI_ONLY = "5493001KJTIIGC8Y1R12"


def make_batch(
    rail: str, currency: str, iso: str, exponent: int, decimals: int,
    flows: list[tuple[str, str, int, str | None, str | None]], *, fmt: str = "ISO20022",
    token: str | None = None, seq: int = 1, payee_ids: dict[str, tuple[str | None, str | None]]
    | None = None,
) -> dict[str, Any]:  # fmt: skip
    """A SettlementBatch as the netting stage writes it; flows are
    (payer, payee, amount_minor, payer_bic, payer_lei); payees' identities from payee_ids."""
    batch_id = ids.batch_id(rail, currency, seq)
    scale = 10 ** (decimals - exponent)
    identities = payee_ids or {}
    instructions = []
    for n, (payer, payee, minor, bic, lei) in enumerate(flows, start=1):
        instruction = ids.instruction_id(batch_id, n)
        payee_bic, payee_lei = identities.get(payee, (None, None))
        instructions.append({
            "instruction_id": instruction, "sequence": n, "payer_id": payer, "payee_id": payee,
            "payer_bic": bic, "payer_lei": lei, "payee_bic": payee_bic, "payee_lei": payee_lei,
            "amount_minor": minor, "amount_rail_units": minor * scale,
            "end_to_end_id": ids.end_to_end_id(instruction), "uetr": ids.uetr(instruction),
        })  # fmt: skip
    batch = {
        "batch_id": batch_id, "rail_id": rail, "currency": currency, "iso_currency": iso,
        "cycle_seq": seq, "cycle_id": ids.cycle_id(currency, seq), "model": "HUB",
        "export_format": fmt, "currency_exponent": exponent, "rail_decimals": decimals,
        "token_symbol": token, "created_at": CREATED, "instructions": instructions,
        "instruction_count": len(instructions),
        "control_sum_minor": sum(i["amount_minor"] for i in instructions),
        "control_sum_rail_units": sum(i["amount_rail_units"] for i in instructions),
    }  # fmt: skip
    # Through the real codec, so the dict has exactly the shape a bank decodes.
    codec = SingleObjectCodec(SchemaCatalog.load())
    decoded: dict[str, Any] = codec.decode(codec.encode("SettlementBatch", batch)).record
    return decoded


def check_facets(obj: Any, path: str = "Document") -> None:
    """Every value of a parsed binding within its XSD facets (as the bindings record them)."""
    if isinstance(obj, list):
        for n, item in enumerate(obj):
            check_facets(item, f"{path}[{n}]")
        return
    if not dataclasses.is_dataclass(obj):
        return
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        meta = f.metadata
        where = f"{path}/{meta.get('name', f.name)}"
        if value is None or value == []:
            assert not meta.get("required"), f"{where} is required"
            continue
        if isinstance(value, str | Decimal) and not isinstance(value, Enum):
            check_text_facets(str(value), meta, where)
        if isinstance(value, Decimal):
            check_decimal_facets(value, meta, where)
        check_facets(value, where)


def check_text_facets(text: str, meta: Mapping[str, Any], where: str) -> None:
    if "pattern" in meta:
        assert re.fullmatch(meta["pattern"], text), f"{where}: {text!r} vs {meta['pattern']}"
    if "max_length" in meta:
        assert len(text) <= meta["max_length"], where
    if "min_length" in meta:
        assert len(text) >= meta["min_length"], where


def check_decimal_facets(value: Decimal, meta: Mapping[str, Any], where: str) -> None:
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    if "fraction_digits" in meta:
        assert -exponent <= meta["fraction_digits"], where
    if "total_digits" in meta:
        assert len(value.as_tuple().digits) <= meta["total_digits"], where
    if "min_inclusive" in meta:
        assert value >= meta["min_inclusive"], where


def parsed(xml: bytes) -> Any:
    document = pacs009.parse(xml)
    check_facets(document)
    return document.ficdt_trf


def test_cnh_hub_batch_round_trips_with_cny_and_exact_amounts() -> None:
    batch = make_batch(
        "cnh-cips", "CNH", "CNY", 2, 2,
        [("DC-SHENZHEN-01", "CLEARING_HOUSE", 400_000_05, "ABCDCNBJ", LEI_ONLY),
         ("LEASECO-LEI", "CLEARING_HOUSE", 1, None, LEI_ONLY),
         ("CLEARING_HOUSE", "SOLAR-QINGHAI-07", 400_000_06, None, None)],
        payee_ids={"SOLAR-QINGHAI-07": ("ABCDCNBJXXX", None)},
    )  # fmt: skip
    xml = pacs009.xml(batch, clearing_house=Identity(bic=OPERATOR_BIC))
    assert xml.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    assert b'xmlns="urn:iso:std:iso:20022:tech:xsd:pacs.009.001.08"' in xml
    doc = parsed(xml)
    header = doc.grp_hdr
    assert header.msg_id == "cnh-cips-CNH-00000001"
    assert header.cre_dt_tm.to_datetime() == CREATED
    assert header.nb_of_txs == "3"
    assert header.ctrl_sum == Decimal("800000.12")
    assert str(header.ctrl_sum) == "800000.12"
    assert header.sttlm_inf.sttlm_mtd.value == "CLRG"
    assert header.sttlm_inf.clr_sys.prtry == "cnh-cips"
    assert header.instg_agt.fin_instn_id.bicfi == OPERATOR_BIC
    txs = doc.cdt_trf_tx_inf
    assert [str(t.intr_bk_sttlm_amt.value) for t in txs] == ["400000.05", "0.01", "400000.06"]
    assert {t.intr_bk_sttlm_amt.ccy for t in txs} == {"CNY"}
    assert b"CNH" not in xml.replace(b"cnh-cips-CNH", b"")
    for tx, instruction in zip(txs, batch["instructions"], strict=True):
        assert tx.pmt_id.instr_id == instruction["instruction_id"]
        assert tx.pmt_id.end_to_end_id == instruction["end_to_end_id"]
        assert tx.pmt_id.uetr == instruction["uetr"]
        assert str(tx.intr_bk_sttlm_dt) == "2026-03-01"
    # BIC wins over LEI; LEI where there is no BIC; the house account is the operator.
    assert (txs[0].dbtr.fin_instn_id.bicfi, txs[0].dbtr.fin_instn_id.lei) == ("ABCDCNBJ", None)
    assert (txs[1].dbtr.fin_instn_id.bicfi, txs[1].dbtr.fin_instn_id.lei) == (None, LEI_ONLY)
    assert txs[0].cdtr.fin_instn_id.bicfi == OPERATOR_BIC
    assert txs[2].dbtr.fin_instn_id.bicfi == OPERATOR_BIC
    assert txs[2].cdtr.fin_instn_id.bicfi == "ABCDCNBJXXX"
    # Sum of the transaction amounts is the control sum, exactly.
    assert sum(t.intr_bk_sttlm_amt.value for t in txs) == header.ctrl_sum


def test_exponent_zero_currency_has_no_decimal_point() -> None:
    batch = make_batch(
        "jpy-zengin", "JPY", "JPY", 0, 0,
        [("A", "CLEARING_HOUSE", 12_345, "ABCDJPJT", None),
         ("CLEARING_HOUSE", "B", 12_345, None, None)],
        payee_ids={"B": (None, LEI_ONLY)},
    )  # fmt: skip
    xml = pacs009.xml(batch, clearing_house=Identity(lei="529900T8BM49AURSDO55"))
    assert b'<IntrBkSttlmAmt Ccy="JPY">12345</IntrBkSttlmAmt>' in xml
    assert b"<CtrlSum>24690</CtrlSum>" in xml
    doc = parsed(xml)
    assert doc.grp_hdr.instg_agt.fin_instn_id.lei == "529900T8BM49AURSDO55"
    assert doc.cdt_trf_tx_inf[1].cdtr.fin_instn_id.lei == LEI_ONLY
    assert doc.cdt_trf_tx_inf[0].cdtr.fin_instn_id.lei == "529900T8BM49AURSDO55"


def test_usd_keeps_trailing_zeros_and_large_amounts_exact() -> None:
    big = 10**17 - 1  # 17 digits: the largest magnitude that fits 18 total digits twice summed
    batch = make_batch(
        "usd-swift", "USD", "USD", 2, 2,
        [("A", "B", 100, "ABCDUS33", None), ("C", "D", big, "ABCDUS33", None)],
        payee_ids={"B": ("ABCDSGSG", None), "D": ("ABCDSGSG", None)},
    )  # fmt: skip
    doc = parsed(pacs009.xml(batch))
    assert [str(t.intr_bk_sttlm_amt.value) for t in doc.cdt_trf_tx_inf] == [
        "1.00", "999999999999999.99",
    ]  # fmt: skip
    assert doc.grp_hdr.ctrl_sum == Decimal("1000000000000000.99")
    assert doc.grp_hdr.instg_agt is None


def test_house_account_without_identity_is_an_error() -> None:
    batch = make_batch(
        "usd-swift", "USD", "USD", 2, 2, [("A", "CLEARING_HOUSE", 5, "ABCDUS33", None)]
    )
    with pytest.raises(ExportError, match="clearing-house-bic"):
        pacs009.xml(batch)


def test_participant_without_bic_or_lei_is_an_error() -> None:
    batch = make_batch("usd-swift", "USD", "USD", 2, 2, [("A", "B", 5, None, None)])
    with pytest.raises(ExportError, match="neither a BIC nor an LEI"):
        pacs009.xml(batch, clearing_house=Identity(bic="ABCDUS33"))


def test_token_batch_is_refused_as_iso20022_and_vice_versa() -> None:
    token = make_batch("cnh-stable", "CNH", "CNY", 2, 6, [("A", "B", 5, None, None)],
                       fmt="TOKEN_BATCH", token="CNHT")  # fmt: skip
    with pytest.raises(ExportError, match="not ISO 20022"):
        pacs009.xml(token)
    bank = make_batch("usd-swift", "USD", "USD", 2, 2, [("A", "B", 5, "ABCDUS33", None)])
    with pytest.raises(ExportError, match="not a token rail"):
        token_batch(bank)


def test_token_batch_json_with_six_decimals() -> None:
    batch = make_batch(
        "cnh-stable", "CNH", "CNY", 2, 6,
        [("SOLAR-QINGHAI-07", "LEASECO-HK-01", 400_000, None, None),
         ("DC-SHENZHEN-01", "SOLAR-QINGHAI-07", 92_233_720_368_547, None, None)],
        fmt="TOKEN_BATCH", token="CNHT",
    )  # fmt: skip
    document = token_batch(batch)
    assert document == {
        "batch_id": "cnh-stable-CNH-00000001",
        "rail_id": "cnh-stable",
        "token": "CNHT",
        "decimals": 6,
        "transfers": [
            {"from": "SOLAR-QINGHAI-07", "to": "LEASECO-HK-01", "value": "4000000000",
             "instruction_id": "cnh-stable-CNH-00000001-000001",
             "uetr": ids.uetr("cnh-stable-CNH-00000001-000001")},
            {"from": "DC-SHENZHEN-01", "to": "SOLAR-QINGHAI-07", "value": "922337203685470000",
             "instruction_id": "cnh-stable-CNH-00000001-000002",
             "uetr": ids.uetr("cnh-stable-CNH-00000001-000002")},
        ],
        "total": str(4_000_000_000 + 922_337_203_685_470_000),
    }  # fmt: skip
    assert json.loads(json.dumps(document)) == document
    assert int(document["total"]) == batch["control_sum_rail_units"]


@pytest.mark.parametrize(
    ("minor", "exponent", "text"),
    [(0, 2, "0.00"), (5, 2, "0.05"), (400_000, 2, "4000.00"), (7, 0, "7"),
     (123_456_789, 6, "123.456789"), (-5, 3, "-0.005"), (2**63 - 1, 2, "92233720368547758.07")],
)  # fmt: skip
def test_minor_to_decimal_is_exact(minor: int, exponent: int, text: str) -> None:
    assert str(minor_to_decimal(minor, exponent)) == text


def test_format_units_and_batch_id_rail() -> None:
    assert format_units(4_000_000_000, 6) == "4,000.000000"
    assert format_units(12_345, 0) == "12,345"
    assert rail_of_batch_id("cnh-stable-CNH-00000001") == "cnh-stable"
    assert rail_of_batch_id(ids.batch_id("a_b-c", "USD", 12)) == "a_b-c"
    with pytest.raises(ExportError):
        rail_of_batch_id("nonsense")


def test_bad_identities_are_refused_before_writing() -> None:
    batch = make_batch(
        "usd-swift", "USD", "USD", 2, 2, [("A", "CLEARING_HOUSE", 5, "ABCDUS33", None)]
    )
    with pytest.raises(ExportError, match="is not a BIC"):
        pacs009.xml(batch, clearing_house=Identity(bic="abc"))
    with pytest.raises(ExportError, match="is not an LEI"):
        pacs009.xml(batch, clearing_house=Identity(lei="TOO-SHORT"))
