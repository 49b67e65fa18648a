"""The pacs.009.001.08 document of a SettlementBatch, built from pyiso20022's bindings.

Why its own module: the bindings are xsdata dataclasses with full annotations, so
mypy checks every element a bank receives (pyproject follows the package's
annotations, which it ships without a py.typed marker); importing them takes about
80 ms, which only the commands that write or read a document should pay, so
the commands import this module when they build or parse one, not at start.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from pyiso20022.pacs.pacs_009_001_08 import (
    ActiveCurrencyAndAmount,
    BranchAndFinancialInstitutionIdentification6,
    ClearingSystemIdentification3Choice,
    CreditTransferTransaction36,
    Document,
    FinancialInstitutionCreditTransferV08,
    FinancialInstitutionIdentification18,
    GroupHeader93,
    PaymentIdentification7,
    SettlementInstruction7,
    SettlementMethod1Code,
)
from xsdata.models.datatype import XmlDate

from clearing_core.encoding.records import SettlementBatch, SettlementInstruction
from clearing_core.exports.documents import (
    CLEARING_HOUSE,
    UETR_PATTERN,
    ExportError,
    Identity,
    iso_text,
)
from clearing_core.exports.iso_xml import checked_amount, render, utc, xml_time
from clearing_core.exports.iso_xml import parse as parse_xml

MESSAGE = "pacs.009.001.08"


def document(
    batch: SettlementBatch,
    *,
    clearing_house: Identity | None = None,
    clearing_house_account: str = CLEARING_HOUSE,
    clearing_system: str | None = None,
) -> Document:
    """The ``Document`` of a SettlementBatch (see ``xml``)."""
    if batch.get("export_format") != "ISO20022":
        raise ExportError(
            f"batch {batch.get('batch_id')} is for a {batch.get('export_format')} rail, "
            "not ISO 20022"
        )
    exponent = int(batch["currency_exponent"])
    ccy = str(batch["iso_currency"])
    created = utc(batch["created_at"])
    instructions = list(batch["instructions"])
    total = _checked_total(batch, instructions)
    transactions = [
        _transaction(i, exponent, ccy, created.date(), clearing_house, clearing_house_account)
        for i in instructions
    ]
    system = clearing_system or str(batch["rail_id"])
    header = GroupHeader93(
        msg_id=iso_text(str(batch["batch_id"]), "M"),
        cre_dt_tm=xml_time(created),
        nb_of_txs=str(len(transactions)),
        ctrl_sum=checked_amount(total, exponent, "control sum"),
        ttl_intr_bk_sttlm_amt=ActiveCurrencyAndAmount(
            value=checked_amount(total, exponent, "control sum"), ccy=ccy
        ),
        intr_bk_sttlm_dt=XmlDate.from_date(created.date()),
        sttlm_inf=SettlementInstruction7(
            sttlm_mtd=SettlementMethod1Code.CLRG,
            clr_sys=ClearingSystemIdentification3Choice(prtry=iso_text(system, "S")),
        ),
        instg_agt=_house_agent(clearing_house),
    )
    return Document(
        ficdt_trf=FinancialInstitutionCreditTransferV08(grp_hdr=header, cdt_trf_tx_inf=transactions)
    )


def _checked_total(batch: SettlementBatch, instructions: Sequence[SettlementInstruction]) -> int:
    """The sum of the instructions, after checking the batch's count and control sum."""
    if len(instructions) != int(batch["instruction_count"]):
        raise ExportError(f"batch {batch['batch_id']}: instruction_count does not match")
    total = sum(int(i["amount_minor"]) for i in instructions)
    if total != int(batch["control_sum_minor"]):
        raise ExportError(f"batch {batch['batch_id']}: control_sum_minor does not match")
    return total


def _transaction(
    instruction: SettlementInstruction, exponent: int, ccy: str, settle_date: date,
    house: Identity | None, house_account: str,
) -> CreditTransferTransaction36:  # fmt: skip
    where = f"instruction {instruction['instruction_id']}"
    if not UETR_PATTERN.fullmatch(str(instruction["uetr"])):
        raise ExportError(f"{where}: UETR {instruction['uetr']!r} is not a UUIDv4")
    return CreditTransferTransaction36(
        pmt_id=PaymentIdentification7(
            instr_id=iso_text(str(instruction["instruction_id"]), "I"),
            end_to_end_id=iso_text(str(instruction["end_to_end_id"]), "E"),
            tx_id=iso_text(str(instruction["instruction_id"]), "T"),
            uetr=str(instruction["uetr"]),
        ),
        intr_bk_sttlm_amt=ActiveCurrencyAndAmount(
            value=checked_amount(int(instruction["amount_minor"]), exponent, where), ccy=ccy
        ),
        intr_bk_sttlm_dt=XmlDate.from_date(settle_date),
        dbtr=_party(str(instruction["payer_id"]), instruction.get("payer_bic"),
                    instruction.get("payer_lei"), house, house_account, where),
        cdtr=_party(str(instruction["payee_id"]), instruction.get("payee_bic"),
                    instruction.get("payee_lei"), house, house_account, where),
    )  # fmt: skip


def _party(
    party_id: str, bic: str | None, lei: str | None, house: Identity | None,
    house_account: str, where: str,
) -> BranchAndFinancialInstitutionIdentification6:  # fmt: skip
    """BranchAndFinancialInstitutionIdentification6 by BICFI, else LEI."""
    if not bic and not lei and party_id == house_account and house:
        bic, lei = house.bic, house.lei
    Identity(bic, lei).checked(f"{where}: {party_id}")
    if bic:
        fin = FinancialInstitutionIdentification18(bicfi=bic)
    elif lei:
        fin = FinancialInstitutionIdentification18(lei=lei)
    elif party_id == house_account:
        raise ExportError(
            f"{where}: the {house_account} account has no BIC or LEI: the rail has no "
            "operator_bic; configure one with --clearing-house-bic or --clearing-house-lei"
        )
    else:
        raise ExportError(f"{where}: participant {party_id!r} has neither a BIC nor an LEI")
    return BranchAndFinancialInstitutionIdentification6(fin_instn_id=fin)


def _house_agent(house: Identity | None) -> BranchAndFinancialInstitutionIdentification6 | None:
    """The instructing agent of the group: the rail operator, where known."""
    if not house:
        return None
    house.checked("clearing house")
    if house.bic:
        fin = FinancialInstitutionIdentification18(bicfi=house.bic)
    else:
        fin = FinancialInstitutionIdentification18(lei=house.lei)
    return BranchAndFinancialInstitutionIdentification6(fin_instn_id=fin)


def xml(
    batch: SettlementBatch,
    *,
    clearing_house: Identity | None = None,
    clearing_house_account: str = CLEARING_HOUSE,
    clearing_system: str | None = None,
) -> bytes:
    """The pacs.009.001.08 document of a batch as UTF-8 XML bytes.

    ``clearing_house`` names the institution that holds ``clearing_house_account``
    on the batch's rail (the rail operator); ``clearing_system`` is a proprietary
    clearing-system name for ``SttlmInf/ClrSys/Prtry`` (default: the rail id)."""
    built = document(
        batch, clearing_house=clearing_house, clearing_house_account=clearing_house_account,
        clearing_system=clearing_system,
    )  # fmt: skip
    return render(built, MESSAGE)  # an invalid document is never written


def parse(data: bytes) -> Document:
    """Parse pacs.009.001.08 XML strictly (unknown elements or attributes fail), after
    validating it against the official XSD."""
    return parse_xml(data, MESSAGE, Document)
