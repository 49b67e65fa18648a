"""camt.054.001.08 (BankToCustomerDebitCreditNotification): a participant's
statements as the debit and credit notification its treasury system reads.

One ``Ntfctn`` per cycle, one ``Ntry`` per instruction: credit or debit, the
amount, and the status: BOOK once settled, PDNG while the rail has not answered,
INFO for a failed instruction (nothing was booked; its amount is carried into
the next cycle, which says so in ``AddtlNtryInf``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pyiso20022.camt.camt_054_001_08 import (
    AccountIdentification4Choice,
    AccountNotification17,
    ActiveOrHistoricCurrencyAndAmount,
    BankToCustomerDebitCreditNotificationV08,
    BankTransactionCodeStructure4,
    CashAccount39,
    CreditDebitCode,
    Document,
    EntryDetails9,
    EntryStatus1Choice,
    EntryTransaction10,
    GenericAccountIdentification1,
    GroupHeader81,
    ProprietaryBankTransactionCodeStructure1,
    ReportEntry10,
    TransactionReferences6,
)

from clearing_core.cycle.statements import FoldedStatement, StatementLine
from clearing_core.exports.documents import ExportError, iso_text
from clearing_core.exports.iso_xml import checked_amount, render, xml_time
from clearing_core.exports.iso_xml import parse as parse_xml

MESSAGE = "camt.054.001.08"
ENTRY_STATUS = {"SETTLED": "BOOK", "PENDING": "PDNG", "FAILED": "INFO"}
TRANSACTION_CODE = "CLEARING-SETTLEMENT"
ACCOUNT_ID_MAX = 34  # Max34Text


def xml(participant_id: str, folded: Sequence[FoldedStatement], *, created_at: datetime) -> bytes:
    """The notification of ``folded`` (a participant's statements)."""
    if len(participant_id) > ACCOUNT_ID_MAX:
        raise ExportError(f"participant id {participant_id!r} is longer than an account id")
    notifications = [_notification(participant_id, f, created_at) for f in folded]
    header = GroupHeader81(
        msg_id=iso_text(f"STMT-{participant_id}-{created_at:%Y%m%dT%H%M%S}", "S"),
        cre_dt_tm=xml_time(created_at),
    )
    notice = BankToCustomerDebitCreditNotificationV08(grp_hdr=header, ntfctn=notifications)
    return render(Document(bk_to_cstmr_dbt_cdt_ntfctn=notice), MESSAGE)


def _notification(
    participant_id: str, folded: FoldedStatement, created_at: datetime
) -> AccountNotification17:
    statement = folded.statement
    iso, exponent = statement["iso_currency"], int(statement["currency_exponent"])
    account = CashAccount39(
        id=AccountIdentification4Choice(othr=GenericAccountIdentification1(id=participant_id)),
        ccy=iso,
    )
    return AccountNotification17(
        id=iso_text(f"{statement['cycle_id']}/{participant_id}", "N"),
        cre_dt_tm=xml_time(created_at), acct=account,
        ntry=[_entry(line, iso, exponent) for line in folded.lines],
        addtl_ntfctn_inf=_summary(folded, exponent),
    )  # fmt: skip


def _entry(line: StatementLine, iso: str, exponent: int) -> ReportEntry10:
    i = line.instruction
    amount = ActiveOrHistoricCurrencyAndAmount(
        value=checked_amount(int(i["amount_minor"]), exponent, str(i["instruction_id"])),
        ccy=iso,
    )
    side = CreditDebitCode.CRDT if i["direction"] == "CREDIT" else CreditDebitCode.DBIT
    refs = TransactionReferences6(
        instr_id=iso_text(str(i["instruction_id"]), "I"),
        end_to_end_id=iso_text(str(i["end_to_end_id"]), "E"),
    )
    note = None
    if line.status == "FAILED":
        note = f"failed ({line.reason_code or 'no reason given'}): carried into the next cycle"
    return ReportEntry10(
        ntry_ref=iso_text(str(i["instruction_id"]), "R"), amt=amount, cdt_dbt_ind=side,
        sts=EntryStatus1Choice(cd=ENTRY_STATUS[line.status]),
        bk_tx_cd=BankTransactionCodeStructure4(
            prtry=ProprietaryBankTransactionCodeStructure1(cd=TRANSACTION_CODE, issr=i["rail_id"])
        ),
        ntry_dtls=[EntryDetails9(tx_dtls=[EntryTransaction10(refs=refs, amt=amount,
                                                             cdt_dbt_ind=side)])],
        addtl_ntry_inf=note,
    )  # fmt: skip


def _summary(folded: FoldedStatement, exponent: int) -> str:
    """The cycle's figures in one line (AddtlNtfctnInf, Max500Text)."""
    s = folded.statement

    def units(minor: int) -> str:
        sign = "-" if minor < 0 else ""
        return sign + str(checked_amount(abs(minor), exponent, "summary"))

    return (f"net {units(s['net_position_minor'])}; in {s['obligations_in_count']} obligations "
            f"{units(s['obligations_in_minor'])}; out {s['obligations_out_count']} obligations "
            f"{units(s['obligations_out_minor'])}; settled {units(folded.settled_minor)}; "
            f"failed and carried {units(folded.failed_minor)}; "
            f"outstanding {units(folded.outstanding_minor)}")  # fmt: skip


def parse(data: bytes) -> Document:
    """A camt.054.001.08 read strictly, after validating it against the official XSD."""
    return parse_xml(data, MESSAGE, Document)
