"""pacs.002.001.10 in: a bank's status report, written by hand here (never by the
project's code), matched to the batch it answers (issue 18, item 2).

Each bad file is refused whole with one line naming the element; nothing of it
becomes an acknowledgement."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from clearing_core.exports import pacs002
from clearing_core.exports.documents import ExportError
from clearing_core.exports.pacs002 import TxOutcome, TxStatus
from clearing_core.exports.status_report import KnownBatches, acks_of_report
from tests.core.exports.test_exports import make_batch

BIC_A, BIC_B, BIC_C = "BANKCNSHXXX", "BANKHKHHXXX", "BANKSGSGXXX"
BANK = "BANK-SWIFT-01"
BATCH = make_batch("usd-swift", "USD", "USD", 2, 2, [
    ("DC-SHENZHEN-01", "SOLAR-QINGHAI-07", 1_250_000, BIC_A, None),
    ("LEASECO-HK-01", "SOLAR-QINGHAI-07", 99, BIC_B, None),
    ("GPU-CLOUD-SG-01", "SOLAR-QINGHAI-07", 7_000_001, BIC_C, None),
])  # fmt: skip
KNOWN = KnownBatches.of([BATCH])
IDS = [str(i["instruction_id"]) for i in BATCH["instructions"]]
E2E = [str(i["end_to_end_id"]) for i in BATCH["instructions"]]
UETRS = [str(i["uetr"]) for i in BATCH["instructions"]]
NS = "urn:iso:std:iso:20022:tech:xsd:pacs.002.001.10"


def tx(e2e: str | None, status: str | None, *, reason: str = "", amount: str = "",
       uetr: str | None = None, extra: str = "") -> str:  # fmt: skip
    """One TxInfAndSts as a bank writes it."""
    parts = []
    if e2e is not None:
        parts.append(f"<OrgnlEndToEndId>{e2e}</OrgnlEndToEndId>")
    if uetr is not None:
        parts.append(f"<OrgnlUETR>{uetr}</OrgnlUETR>")
    if status is not None:
        parts.append(f"<TxSts>{status}</TxSts>")
    parts.append(reason)
    parts.append(extra)
    if amount:
        parts.append(f'<OrgnlTxRef><IntrBkSttlmAmt Ccy="USD">{amount}</IntrBkSttlmAmt>'
                     "</OrgnlTxRef>")  # fmt: skip
    return f"<TxInfAndSts>{''.join(parts)}</TxInfAndSts>"


def rsn(code: str, text: str = "") -> str:
    info = f"<AddtlInf>{text}</AddtlInf>" if text else ""
    return f"<StsRsnInf><Rsn><Cd>{code}</Cd></Rsn>{info}</StsRsnInf>"


def report(*txs: str, group: str = "PART", msg_id: str | None = None, ns: str = NS,
           group_extra: str = "") -> bytes:  # fmt: skip
    grp_sts = f"<GrpSts>{group}</GrpSts>" if group else ""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="{ns}">
  <FIToFIPmtStsRpt>
    <GrpHdr><MsgId>STS-20260301-0001</MsgId><CreDtTm>2026-03-01T09:00:00.000Z</CreDtTm>
      <InstgAgt><FinInstnId><BICFI>SWIFUSNYXXX</BICFI></FinInstnId></InstgAgt></GrpHdr>
    <OrgnlGrpInfAndSts>
      <OrgnlMsgId>{msg_id or BATCH["batch_id"]}</OrgnlMsgId>
      <OrgnlMsgNmId>pacs.009.001.08</OrgnlMsgNmId>
      <OrgnlNbOfTxs>3</OrgnlNbOfTxs>{grp_sts}{group_extra}
    </OrgnlGrpInfAndSts>
    {"".join(txs)}
  </FIToFIPmtStsRpt>
</Document>""".encode()


def acks(data: bytes) -> list[dict[str, Any]]:
    return [dict(a) for a in acks_of_report(pacs002.parse(data), KNOWN, bank_id=BANK)]


def statuses(found: list[dict[str, Any]]) -> dict[str, tuple[str, str | None]]:
    return {a["instruction_id"]: (a["status"], a["reason_code"]) for a in found}


def test_one_rejection_and_the_group_settles_the_rest() -> None:
    found = acks(report(tx(E2E[1], "RJCT", reason=rsn("AM04"), amount="0.99"), group="ACSC"))
    assert statuses(found) == {IDS[0]: ("SETTLED", None), IDS[1]: ("FAILED", "AM04"),
                               IDS[2]: ("SETTLED", None)}  # fmt: skip
    first = found[0]
    assert (first["batch_id"], first["rail_id"], first["bank_id"]) == (
        BATCH["batch_id"], "usd-swift", BANK)  # fmt: skip
    assert first["bank_reference"] == "STS-20260301-0001"
    assert first["acked_at"] == datetime(2026, 3, 1, 9, tzinfo=UTC)


def test_interim_statuses_are_pending_and_narr_carries_its_text() -> None:
    found = acks(report(
        tx(E2E[0], "ACSP"), tx(E2E[1], "PDNG"),
        tx(None, "RJCT", uetr=UETRS[2], reason=rsn("NARR", "beneficiary bank closed")),
    ))  # fmt: skip
    assert statuses(found) == {IDS[0]: ("PENDING", None), IDS[1]: ("PENDING", None),
                               IDS[2]: ("FAILED", "NARR")}  # fmt: skip
    assert found[2]["reason"] == "beneficiary bank closed"


def test_a_group_rejection_fails_every_transaction_not_listed() -> None:
    found = acks(report(tx(E2E[0], "ACSC"), group="RJCT", group_extra=rsn("AC01")))
    assert statuses(found) == {IDS[0]: ("SETTLED", None), IDS[1]: ("FAILED", "AC01"),
                               IDS[2]: ("FAILED", "AC01")}  # fmt: skip


def test_a_partial_report_answers_only_what_it_lists() -> None:
    assert statuses(acks(report(tx(E2E[2], "ACSC")))) == {IDS[2]: ("SETTLED", None)}


def test_the_simulated_banks_report_reads_back_the_same() -> None:
    outcomes = [TxOutcome(IDS[0], TxStatus.ACSC), TxOutcome(IDS[1], TxStatus.RJCT, "AB03"),
                TxOutcome(IDS[2], TxStatus.RJCT, "NARR", "sanctions screening hit")]  # fmt: skip
    at = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    data = pacs002.xml(BATCH, outcomes, message_id="SIM-1", created_at=at)
    assert statuses(acks(data)) == {IDS[0]: ("SETTLED", None), IDS[1]: ("FAILED", "AB03"),
                                    IDS[2]: ("FAILED", "NARR")}  # fmt: skip
    settled_all = pacs002.xml(BATCH, [TxOutcome(i, TxStatus.ACSC) for i in IDS],
                              message_id="SIM-2", created_at=at)  # fmt: skip
    assert b"<TxInfAndSts>" not in settled_all  # the group status says it for all
    assert {s for s, _ in statuses(acks(settled_all)).values()} == {"SETTLED"}


@pytest.mark.parametrize(("data", "message"), [
    (report(tx("E-NOT-SENT", "ACSC")), "TxInfAndSts[1]/OrgnlEndToEndId: 'E-NOT-SENT' is not"),
    (report(tx(E2E[0], "ACSC"), tx("E-NOT-SENT", "ACSC")), "TxInfAndSts[2]/OrgnlEndToEndId"),
    (report(tx(E2E[0], "ACSC"), msg_id="usd-swift-USD-00000099"),
     "OrgnlGrpInfAndSts[1]/OrgnlMsgId: 'usd-swift-USD-00000099' is not a batch"),
    (report(tx(E2E[0], "ACSC"), tx(E2E[0], "RJCT", reason=rsn("AM04"))),
     "TxInfAndSts[2]: reports " + IDS[0] + " again (already at TxInfAndSts[1])"),
    (report(tx(E2E[1], "ACSC", amount="1.00")),
     "TxInfAndSts[1]/OrgnlTxRef/IntrBkSttlmAmt: 1.00 USD is not the amount of"),
    (report(tx(E2E[1], "ACSC", amount="0.985")), "IntrBkSttlmAmt: 0.985 has more than 2 decimals"),
    (report(tx(E2E[1], None)), "TxInfAndSts[1]/TxSts: missing"),
    (report(tx(E2E[1], "XXXX")), "TxInfAndSts[1]/TxSts: 'XXXX' is not a status"),
    (report(tx(E2E[1], "RJCT", reason=rsn("NARR"))), "StsRsnInf/AddtlInf: reason NARR without"),
    (report(tx(E2E[0], "ACSC", uetr=UETRS[1])), "TxInfAndSts[1]/OrgnlUETR: " + UETRS[1]),
    (report(tx(None, "ACSC", uetr="1b4c2f0e-9a7d-4e2b-8c3a-5d6e7f809a1b")),
     "TxInfAndSts[1]/OrgnlUETR: 1b4c2f0e-9a7d-4e2b-8c3a-5d6e7f809a1b is not a transaction"),
    (report(group="PART"), "the report gives no status for any transaction"),
])  # fmt: skip
def test_a_report_that_does_not_match_is_refused_whole(data: bytes, message: str) -> None:
    with pytest.raises(ExportError) as refused:
        acks(data)
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(("data", "message"), [
    (report(tx(E2E[0], "ACSC"), ns="urn:iso:std:iso:20022:tech:xsd:pacs.002.001.12"),
     "pacs.002.001.10 invalid at"),
    (report(tx(E2E[0], "ACSC", extra="<Colour>red</Colour>")), "invalid at /Document/"),
    (report(tx(E2E[1], "ACSC", amount="12.3.4")), "IntrBkSttlmAmt"),
    (report(tx(E2E[1], "ACSC", amount="-0.99")), "IntrBkSttlmAmt"),
    (report(tx(E2E[0], "ACSC")).replace(b"<MsgId>STS-20260301-0001</MsgId>", b""), "GrpHdr"),
    (b"<Document>not a report", "pacs.002.001.10 invalid at"),
    (report(tx(E2E[0], "ACSC")).replace(b"<MsgId>STS-20260301-0001</MsgId>", b"<MsgId>&x;</MsgId>")
     .replace(b"<Document", b'<!DOCTYPE Document [<!ENTITY x SYSTEM "file:///etc/hostname">]>'
              b"<Document", 1), "pacs.002.001.10 invalid"),  # an external entity: never read
])  # fmt: skip
def test_a_malformed_report_is_one_line_naming_the_element(data: bytes, message: str) -> None:
    with pytest.raises(ExportError) as refused:
        pacs002.parse(data)
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)
