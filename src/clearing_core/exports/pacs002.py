"""pacs.002.001.10 (FIToFIPaymentStatusReport): the status report a settlement bank
answers a pacs.009 with, written (the simulated bank) and read (``clearing ack``).

Why the clearing house writes them too: the simulated bank of the demo and the
tests must speak exactly what a real bank sends, so its reports go through the
same XSD and the same reader as a real bank's file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pyiso20022.pacs.pacs_002_001_10 import (
    ActiveOrHistoricCurrencyAndAmount,
    BranchAndFinancialInstitutionIdentification6,
    Document,
    FinancialInstitutionIdentification18,
    FitoFipaymentStatusReportV10,
    GroupHeader91,
    OriginalGroupHeader17,
    OriginalTransactionReference28,
    PaymentTransaction110,
    StatusReason6Choice,
    StatusReasonInformation12,
)

from clearing_core.encoding.records import SettlementBatch, SettlementInstruction
from clearing_core.exports.documents import ExportError, Identity, iso_text
from clearing_core.exports.iso_xml import checked_amount, render, xml_time
from clearing_core.exports.iso_xml import parse as parse_xml
from clearing_core.exports.pacs009 import MESSAGE as PACS009

MESSAGE = "pacs.002.001.10"
ADDITIONAL_INFO_MAX = 105  # Max105Text


class TxStatus(StrEnum):
    """The ExternalPaymentTransactionStatus1Code values a bank answers with."""

    ACSC = "ACSC"  # settlement completed
    RJCT = "RJCT"  # rejected
    PDNG = "PDNG"  # pending
    ACSP = "ACSP"  # accepted, settlement in process


@dataclass(frozen=True, slots=True)
class TxOutcome:
    """What the bank says of one instruction: a status, and for a rejection an
    ExternalStatusReason1Code (AM04 ...) and, for NARR, the narrative."""

    instruction_id: str
    status: TxStatus
    reason_code: str | None = None
    narrative: str | None = None


def xml(
    batch: SettlementBatch, outcomes: Sequence[TxOutcome], *, message_id: str,
    created_at: datetime, bank: Identity | None = None,
) -> bytes:  # fmt: skip
    """The status report of one pacs.009 (the batch's): every instruction is listed
    unless all settled, when the group status ACSC says it for all of them."""
    by_id = {str(i["instruction_id"]): i for i in batch["instructions"]}
    if sorted(o.instruction_id for o in outcomes) != sorted(by_id):
        raise ExportError(f"batch {batch['batch_id']}: a status report must answer every "
                          "instruction once")  # fmt: skip
    exponent, ccy = int(batch["currency_exponent"]), str(batch["iso_currency"])
    all_settled = all(o.status is TxStatus.ACSC for o in outcomes)
    all_rejected = all(o.status is TxStatus.RJCT for o in outcomes)
    group = OriginalGroupHeader17(
        orgnl_msg_id=iso_text(str(batch["batch_id"]), "M"), orgnl_msg_nm_id=PACS009,
        orgnl_nb_of_txs=str(len(by_id)),
        orgnl_ctrl_sum=checked_amount(int(batch["control_sum_minor"]), exponent, "control sum"),
        grp_sts="ACSC" if all_settled else "RJCT" if all_rejected else "PART",
    )  # fmt: skip
    listed = [] if all_settled else outcomes
    transactions = [_transaction(by_id[o.instruction_id], o, exponent, ccy) for o in listed]
    agent = None
    if bank:
        bank.checked("bank")
        agent = BranchAndFinancialInstitutionIdentification6(
            fin_instn_id=FinancialInstitutionIdentification18(bicfi=bank.bic, lei=bank.lei)
        )
    header = GroupHeader91(msg_id=iso_text(message_id, "R"), cre_dt_tm=xml_time(created_at),
                           instg_agt=agent)  # fmt: skip
    report = FitoFipaymentStatusReportV10(
        grp_hdr=header, orgnl_grp_inf_and_sts=[group], tx_inf_and_sts=transactions
    )
    return render(Document(fito_fipmt_sts_rpt=report), MESSAGE)


def _transaction(
    instruction: SettlementInstruction, outcome: TxOutcome, exponent: int, ccy: str
) -> PaymentTransaction110:
    reasons = []
    if outcome.reason_code or outcome.narrative:
        info = [outcome.narrative[:ADDITIONAL_INFO_MAX]] if outcome.narrative else []
        code = StatusReason6Choice(cd=outcome.reason_code) if outcome.reason_code else None
        reasons.append(StatusReasonInformation12(rsn=code, addtl_inf=info))
    amount = checked_amount(int(instruction["amount_minor"]), exponent,
                            f"instruction {instruction['instruction_id']}")  # fmt: skip
    return PaymentTransaction110(
        orgnl_instr_id=iso_text(str(instruction["instruction_id"]), "I"),
        orgnl_end_to_end_id=iso_text(str(instruction["end_to_end_id"]), "E"),
        orgnl_tx_id=iso_text(str(instruction["instruction_id"]), "T"),
        orgnl_uetr=str(instruction["uetr"]), tx_sts=outcome.status.value, sts_rsn_inf=reasons,
        orgnl_tx_ref=OriginalTransactionReference28(
            intr_bk_sttlm_amt=ActiveOrHistoricCurrencyAndAmount(value=amount, ccy=ccy)
        ),
    )  # fmt: skip


def parse(data: bytes) -> Document:
    """A pacs.002.001.10 read strictly, after validating it against the official XSD."""
    return parse_xml(data, MESSAGE, Document)


__all__ = ["MESSAGE", "TxOutcome", "TxStatus", "parse", "xml"]
