"""A bank's pacs.002 status report, matched to the batches it answers: one
``SettlementAck`` per instruction it decides.

Why everything is checked before anything is returned: a bank's file is one
answer, so a report naming a message or a transaction the clearing house never
sent, an amount that is not the instruction's, or the same transaction twice
means the file is not what the bank thinks it is, and none of it may be applied
(DESIGN §11). Each error is one line naming the element, as a bank's operator
would look for it in the file.

Mapping (docs/bank-exports.md): ``TxSts`` ACSC, ACCC -> SETTLED; RJCT -> FAILED
with the reason of ``StsRsnInf/Rsn/Cd`` (or ``Prtry``); ACSP, ACTC, ACCP, ACWC,
ACWP, PDNG, RCVD -> PENDING. A group status ACSC or RJCT applies to every
transaction of the group that is not listed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pyiso20022.pacs.pacs_002_001_10 import (
    Document,
    OriginalGroupHeader17,
    PaymentTransaction110,
    StatusReasonInformation12,
)

from clearing_core.encoding.records import AckStatus, SettlementAck, SettlementBatch
from clearing_core.encoding.records import SettlementInstruction as Instruction
from clearing_core.exports.documents import ExportError, iso_text
from clearing_core.exports.iso_xml import decimal_to_minor, utc

STATUS_OF: dict[str, AckStatus] = {
    "ACSC": "SETTLED", "ACCC": "SETTLED", "RJCT": "FAILED",
    **dict.fromkeys(("ACSP", "ACTC", "ACCP", "ACWC", "ACWP", "PDNG", "RCVD"), "PENDING"),
}  # fmt: skip
GROUP_STATUSES_APPLIED = ("ACSC", "RJCT")  # to every transaction not listed
NARRATIVE = "NARR"  # the reason is in AddtlInf
TRANSACTIONS_MAX = 100_000


@dataclass
class KnownBatches:
    """The batches a report may answer, by the ``MsgId`` and the UETRs they went out with."""

    by_message_id: dict[str, SettlementBatch] = field(default_factory=dict)
    by_uetr: dict[str, tuple[SettlementBatch, Instruction]] = field(default_factory=dict)
    # batch id -> the EndToEndId each instruction went out with -> the instruction
    by_end_to_end: dict[str, dict[str, Instruction]] = field(default_factory=dict)

    @classmethod
    def of(cls, batches: Iterable[SettlementBatch]) -> KnownBatches:
        known = cls()
        for batch in batches:
            known.by_message_id[iso_text(str(batch["batch_id"]), "M")] = batch
            sent = known.by_end_to_end.setdefault(str(batch["batch_id"]), {})
            for instruction in batch["instructions"]:
                known.by_uetr[str(instruction["uetr"])] = (batch, instruction)
                sent[iso_text(str(instruction["end_to_end_id"]), "E")] = instruction
        return known


@dataclass(frozen=True)
class _Decision:
    where: str
    status: AckStatus
    reason_code: str | None
    reason: str | None


def acks_of_report(document: Document, known: KnownBatches, *, bank_id: str) -> list[SettlementAck]:
    """Every acknowledgement a status report gives, or ``ExportError`` for the first
    thing wrong in it (then nothing is to be sent)."""
    report = document.fito_fipmt_sts_rpt
    acked_at = utc(report.grp_hdr.cre_dt_tm.to_datetime())
    groups = _groups(report.orgnl_grp_inf_and_sts, known)
    if len(report.tx_inf_and_sts) > TRANSACTIONS_MAX:
        raise ExportError(f"TxInfAndSts: more than {TRANSACTIONS_MAX} transactions")
    decided: dict[str, tuple[SettlementBatch, Instruction, _Decision]] = {}
    for index, tx in enumerate(report.tx_inf_and_sts, start=1):
        where = f"TxInfAndSts[{index}]"
        batch, instruction = _match(tx, groups, known, where)
        _check_amount(tx, batch, instruction, where)
        earlier = decided.get(str(instruction["instruction_id"]))
        if earlier is not None:
            raise ExportError(f"{where}: reports {instruction['instruction_id']} again "
                              f"(already at {earlier[2].where})")  # fmt: skip
        status = _status(tx.tx_sts, f"{where}/TxSts")
        code, text = _reason(tx.sts_rsn_inf, status, where)
        decided[str(instruction["instruction_id"])] = (
            batch, instruction, _Decision(where, status, code, text))  # fmt: skip
    for where, group in groups.items():
        _apply_group_status(group, where, decided)
    if not decided:
        raise ExportError("the report gives no status for any transaction (no TxInfAndSts "
                          "and no group status ACSC or RJCT)")  # fmt: skip
    reference = report.grp_hdr.msg_id
    return [_ack(b, i, d, bank_id, reference, acked_at) for b, i, d in decided.values()]


@dataclass(frozen=True)
class _Group:
    batch: SettlementBatch
    header: OriginalGroupHeader17


def _groups(headers: Sequence[OriginalGroupHeader17], known: KnownBatches) -> dict[str, _Group]:
    """The original messages the report answers, checked against what was sent."""
    groups: dict[str, _Group] = {}
    seen: dict[str, str] = {}
    for index, header in enumerate(headers, start=1):
        where = f"OrgnlGrpInfAndSts[{index}]"
        batch = _batch(header.orgnl_msg_id, header.orgnl_msg_nm_id, known, where)
        if header.orgnl_msg_id in seen:
            raise ExportError(f"{where}/OrgnlMsgId: {header.orgnl_msg_id} is reported again "
                              f"(already at {seen[header.orgnl_msg_id]})")  # fmt: skip
        seen[header.orgnl_msg_id] = where
        count = len(batch["instructions"])
        if header.orgnl_nb_of_txs is not None and header.orgnl_nb_of_txs != str(count):
            raise ExportError(f"{where}/OrgnlNbOfTxs: {header.orgnl_nb_of_txs}, but "
                              f"{batch['batch_id']} has {count} transactions")  # fmt: skip
        if header.orgnl_ctrl_sum is not None:
            exponent = int(batch["currency_exponent"])
            total = decimal_to_minor(header.orgnl_ctrl_sum, exponent, f"{where}/OrgnlCtrlSum")
            if total != int(batch["control_sum_minor"]):
                raise ExportError(f"{where}/OrgnlCtrlSum: {header.orgnl_ctrl_sum} is not the "
                                  f"control sum of {batch['batch_id']}")  # fmt: skip
        if header.grp_sts is not None and header.grp_sts not in (*STATUS_OF, "PART"):
            raise ExportError(f"{where}/GrpSts: {header.grp_sts!r} is not a group status "
                              "this clearing house understands")  # fmt: skip
        groups[where] = _Group(batch, header)
    return groups


def _batch(message_id: str, message_name: str, known: KnownBatches, where: str) -> SettlementBatch:
    if not message_name.startswith("pacs.009"):
        raise ExportError(f"{where}/OrgnlMsgNmId: {message_name!r}; the clearing house sends "
                          "pacs.009 only")  # fmt: skip
    batch = known.by_message_id.get(message_id)
    if batch is None:
        raise ExportError(f"{where}/OrgnlMsgId: {message_id!r} is not a batch the clearing "
                          "house sent")  # fmt: skip
    return batch


def _match(
    tx: PaymentTransaction110, groups: dict[str, _Group], known: KnownBatches, where: str
) -> tuple[SettlementBatch, Instruction]:
    """The instruction a transaction status names: by original message and end-to-end
    id, else by UETR; where both name it they must agree."""
    batch: SettlementBatch | None = None
    if tx.orgnl_grp_inf is not None:
        info = tx.orgnl_grp_inf
        batch = _batch(info.orgnl_msg_id, info.orgnl_msg_nm_id, known, f"{where}/OrgnlGrpInf")
    elif len(groups) == 1:
        batch = next(iter(groups.values())).batch
    by_e2e = _by_end_to_end(tx.orgnl_end_to_end_id, batch, known, where)
    by_uetr = _by_uetr(tx.orgnl_uetr, batch, known, where)
    if by_e2e is None and by_uetr is None:
        raise ExportError(f"{where}: names its transaction by neither OrgnlMsgId + "
                          "OrgnlEndToEndId nor OrgnlUETR")  # fmt: skip
    if by_e2e is not None and by_uetr is not None and by_e2e[1] is not by_uetr[1]:
        raise ExportError(f"{where}/OrgnlUETR: {tx.orgnl_uetr} is not the transaction of "
                          f"OrgnlEndToEndId {tx.orgnl_end_to_end_id}")  # fmt: skip
    found = by_e2e or by_uetr
    assert found is not None
    return found


def _by_end_to_end(
    end_to_end_id: str | None, batch: SettlementBatch | None, known: KnownBatches, where: str
) -> tuple[SettlementBatch, Instruction] | None:
    if end_to_end_id is None or batch is None:
        return None
    instruction = known.by_end_to_end[str(batch["batch_id"])].get(end_to_end_id)
    if instruction is not None:
        return batch, instruction
    raise ExportError(f"{where}/OrgnlEndToEndId: {end_to_end_id!r} is not a transaction of "
                      f"{batch['batch_id']}")  # fmt: skip


def _by_uetr(
    uetr: str | None, batch: SettlementBatch | None, known: KnownBatches, where: str
) -> tuple[SettlementBatch, Instruction] | None:
    if uetr is None:
        return None
    found = known.by_uetr.get(uetr)
    if found is None or (batch is not None and found[0] is not batch):
        owner = f"of {batch['batch_id']}" if batch is not None else "the clearing house sent"
        raise ExportError(f"{where}/OrgnlUETR: {uetr} is not a transaction {owner}")
    return found


def _check_amount(
    tx: PaymentTransaction110, batch: SettlementBatch, instruction: Instruction, where: str
) -> None:
    amount = tx.orgnl_tx_ref.intr_bk_sttlm_amt if tx.orgnl_tx_ref else None
    if amount is None:
        return
    where = f"{where}/OrgnlTxRef/IntrBkSttlmAmt"
    exponent = int(batch["currency_exponent"])
    if amount.ccy != batch["iso_currency"] or decimal_to_minor(
        amount.value, exponent, where
    ) != int(instruction["amount_minor"]):
        raise ExportError(f"{where}: {amount.value} {amount.ccy} is not the amount of "
                          f"{instruction['instruction_id']}")  # fmt: skip


def _status(code: str | None, where: str) -> AckStatus:
    if code is None:
        raise ExportError(f"{where}: missing (the transaction's status)")
    status = STATUS_OF.get(code)
    if status is None:
        raise ExportError(f"{where}: {code!r} is not a status this clearing house understands "
                          f"({', '.join(sorted(STATUS_OF))})")  # fmt: skip
    return status


def _reason(
    reasons: Sequence[StatusReasonInformation12], status: AckStatus, where: str
) -> tuple[str | None, str | None]:
    """The first reason's code and its additional information."""
    if not reasons:
        return None, None
    first = reasons[0]
    code = (first.rsn.cd or first.rsn.prtry) if first.rsn else None
    text = " ".join(first.addtl_inf) or None
    if code == NARRATIVE and not text:
        raise ExportError(f"{where}/StsRsnInf/AddtlInf: reason NARR without its narrative")
    return (code, text) if status != "SETTLED" else (None, text)


def _apply_group_status(
    group: _Group, where: str, decided: dict[str, tuple[SettlementBatch, Instruction, _Decision]]
) -> None:
    code = group.header.grp_sts
    if code not in GROUP_STATUSES_APPLIED:
        return
    status = _status(code, f"{where}/GrpSts")
    reason_code, reason = _reason(group.header.sts_rsn_inf, status, where)
    decision = _Decision(where, status, reason_code, reason)
    for instruction in group.batch["instructions"]:
        decided.setdefault(str(instruction["instruction_id"]), (group.batch, instruction, decision))


def _ack(
    batch: SettlementBatch, instruction: Instruction, decision: _Decision, bank_id: str,
    reference: str, acked_at: datetime,
) -> SettlementAck:  # fmt: skip
    return {
        "batch_id": str(batch["batch_id"]), "instruction_id": str(instruction["instruction_id"]),
        "rail_id": str(batch["rail_id"]), "status": decision.status,
        "reason_code": decision.reason_code, "reason": decision.reason, "bank_id": bank_id,
        "bank_reference": reference, "acked_at": acked_at,
        "transaction_hash": None, "block_number": None,
    }  # fmt: skip


def instructing_agent(document: Document) -> str | None:
    """The BIC (else LEI) of the bank that sent the report (``GrpHdr/InstgAgt``)."""
    agent = document.fito_fipmt_sts_rpt.grp_hdr.instg_agt
    if agent is None:
        return None
    return agent.fin_instn_id.bicfi or agent.fin_instn_id.lei


def message_ids(document: Document) -> tuple[set[str], bool]:
    """The original message ids a report names, and whether some transaction names
    none (matched by UETR alone, so any batch may hold it)."""
    report = document.fito_fipmt_sts_rpt
    named = {g.orgnl_msg_id for g in report.orgnl_grp_inf_and_sts}
    named |= {t.orgnl_grp_inf.orgnl_msg_id for t in report.tx_inf_and_sts if t.orgnl_grp_inf}
    unnamed = len(report.orgnl_grp_inf_and_sts) != 1 and any(
        t.orgnl_grp_inf is None for t in report.tx_inf_and_sts
    )
    return named, unnamed
