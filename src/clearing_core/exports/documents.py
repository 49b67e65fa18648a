"""What a settlement bank or token rail receives: pacs.009 XML and token-batch JSON.

Pure document building (a decoded ``SettlementBatch`` dict in, XML bytes or a JSON
dict out); reading the batch from Kafka is the CLI's job. Amounts are converted
from integer minor units with integer arithmetic only, so an export never gains
or loses a unit.

The ``CLEARING_HOUSE`` account of a rail is an account the rail operator keeps
for the clearing house, so in ISO 20022 it is identified by the rail's operator
(``operator_bic`` in the reference data) and, for rails without one, by a
configured clearing-house BIC or LEI (see ``docs/bank-exports.md``).
"""

from __future__ import annotations

import hashlib
import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from clearing_core.errors import InputError

PACS009_NAMESPACE = "urn:iso:std:iso:20022:tech:xsd:pacs.009.001.08"
PACS009_MODULE = "pyiso20022.pacs.pacs_009_001_08"
ISO_TEXT_MAX = 35  # Max35Text: MsgId, InstrId, EndToEndId, Prtry
ISO_AMOUNT_DIGITS_MAX = 18  # ActiveCurrencyAndAmount: totalDigits 18
ISO_AMOUNT_FRACTION_MAX = 5  # ActiveCurrencyAndAmount: fractionDigits 5
CLEARING_HOUSE = "CLEARING_HOUSE"
# The XSD's patterns (BICFIDec2014Identifier, LEIIdentifier, UUIDv4Identifier).
BIC_PATTERN = re.compile(r"[A-Z0-9]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?")
LEI_PATTERN = re.compile(r"[A-Z0-9]{18}[0-9]{2}")
UETR_PATTERN = re.compile(r"[a-f0-9]{8}-[a-f0-9]{4}-4[a-f0-9]{3}-[89ab][a-f0-9]{3}-[a-f0-9]{12}")


class ExportError(InputError):
    """A batch cannot be written in the requested format."""

    reason_code = "EXPORT_FAILED"


@dataclass(frozen=True, slots=True)
class Identity:
    """How a financial institution is named in ISO 20022: BICFI, else LEI."""

    bic: str | None = None
    lei: str | None = None

    def __bool__(self) -> bool:
        return bool(self.bic or self.lei)

    def checked(self, where: str) -> Identity:
        """This identity, after checking the BIC and LEI against the XSD's patterns."""
        if self.bic and not BIC_PATTERN.fullmatch(self.bic):
            raise ExportError(f"{where}: {self.bic!r} is not a BIC")
        if self.lei and not LEI_PATTERN.fullmatch(self.lei):
            raise ExportError(f"{where}: {self.lei!r} is not an LEI")
        return self


def minor_to_decimal(amount_minor: int, exponent: int) -> Decimal:
    """``amount_minor`` / 10**exponent as a Decimal with exactly ``exponent`` places.

    Built from the integer digits (never a float, never a rounding context)."""
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise ExportError(f"amount {amount_minor!r} is not an integer")
    if not 0 <= exponent <= 18:
        raise ExportError(f"currency exponent {exponent} is out of range")
    sign = 1 if amount_minor < 0 else 0
    digits = tuple(int(d) for d in str(abs(amount_minor)).zfill(exponent + 1))
    return Decimal((sign, digits, -exponent))


def format_units(amount: int, decimals: int, *, grouping: bool = True) -> str:
    """Rail units as a human string: 4000000000 with 6 decimals -> ``4,000.000000``."""
    value = minor_to_decimal(amount, decimals)
    return f"{value:,.{decimals}f}" if grouping else f"{value:.{decimals}f}"


def iso_text(value: str, prefix: str = "H") -> str:
    """``value`` when it fits ISO 20022's Max35Text, else a stable 35-character hash."""
    if 0 < len(value) <= ISO_TEXT_MAX:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()
    return (prefix + digest)[:ISO_TEXT_MAX]


def rail_of_batch_id(batch_id: str) -> str:
    """Batch ids are ``<rail>-<CUR>-<seq, 8 digits>``; rail ids may contain dashes."""
    parts = batch_id.rsplit("-", 2)
    if len(parts) != 3 or not parts[0] or not (parts[2].isdigit() and len(parts[2]) == 8):
        raise ExportError(f"{batch_id!r} is not a batch id (<rail>-<CUR>-<8-digit sequence>)")
    return parts[0]


def _utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    raise ExportError(f"created_at {value!r} is not a timestamp")


def _checked_amount(amount_minor: int, exponent: int, what: str) -> Decimal:
    if exponent > ISO_AMOUNT_FRACTION_MAX:
        raise ExportError(
            f"currency exponent {exponent} exceeds ISO 20022's {ISO_AMOUNT_FRACTION_MAX} decimals"
        )
    if amount_minor < 0:
        raise ExportError(f"{what}: negative amount {amount_minor}")
    value = minor_to_decimal(amount_minor, exponent)
    if len(value.as_tuple().digits) > ISO_AMOUNT_DIGITS_MAX:
        raise ExportError(f"{what}: {value} has more than {ISO_AMOUNT_DIGITS_MAX} digits")
    return value


def _party(
    pacs: Any, party_id: str, bic: str | None, lei: str | None, house: Identity | None,
    house_account: str, where: str,
) -> Any:  # fmt: skip
    """BranchAndFinancialInstitutionIdentification6 by BICFI, else LEI."""
    if not bic and not lei and party_id == house_account and house:
        bic, lei = house.bic, house.lei
    Identity(bic, lei).checked(f"{where}: {party_id}")
    if bic:
        fin = pacs.FinancialInstitutionIdentification18(bicfi=bic)
    elif lei:
        fin = pacs.FinancialInstitutionIdentification18(lei=lei)
    elif party_id == house_account:
        raise ExportError(
            f"{where}: the {house_account} account has no BIC or LEI: the rail has no "
            "operator_bic; configure one with --clearing-house-bic or --clearing-house-lei"
        )
    else:
        raise ExportError(f"{where}: participant {party_id!r} has neither a BIC nor an LEI")
    return pacs.BranchAndFinancialInstitutionIdentification6(fin_instn_id=fin)


def pacs009_document(
    batch: Mapping[str, Any],
    *,
    clearing_house: Identity | None = None,
    clearing_house_account: str = CLEARING_HOUSE,
    clearing_system: str | None = None,
) -> Any:
    """The pyiso20022 ``Document`` (pacs.009.001.08) of a SettlementBatch.

    ``clearing_house`` names the institution that holds ``clearing_house_account``
    on the batch's rail (the rail operator); ``clearing_system`` is a proprietary
    clearing-system name for ``SttlmInf/ClrSys/Prtry`` (default: the rail id)."""
    pacs = importlib.import_module(PACS009_MODULE)
    from xsdata.models.datatype import XmlDate, XmlDateTime

    if batch.get("export_format") != "ISO20022":
        raise ExportError(
            f"batch {batch.get('batch_id')} is for a {batch.get('export_format')} rail, "
            "not ISO 20022"
        )
    exponent = int(batch["currency_exponent"])
    ccy = str(batch["iso_currency"])
    created = _utc(batch["created_at"])
    settle_date: date = created.date()
    instructions = list(batch["instructions"])
    if len(instructions) != int(batch["instruction_count"]):
        raise ExportError(f"batch {batch['batch_id']}: instruction_count does not match")
    total = sum(int(i["amount_minor"]) for i in instructions)
    if total != int(batch["control_sum_minor"]):
        raise ExportError(f"batch {batch['batch_id']}: control_sum_minor does not match")

    transactions = []
    for instruction in instructions:
        where = f"instruction {instruction['instruction_id']}"
        if not UETR_PATTERN.fullmatch(str(instruction["uetr"])):
            raise ExportError(f"{where}: UETR {instruction['uetr']!r} is not a UUIDv4")
        transactions.append(
            pacs.CreditTransferTransaction36(
                pmt_id=pacs.PaymentIdentification7(
                    instr_id=iso_text(str(instruction["instruction_id"]), "I"),
                    end_to_end_id=iso_text(str(instruction["end_to_end_id"]), "E"),
                    tx_id=iso_text(str(instruction["instruction_id"]), "T"),
                    uetr=str(instruction["uetr"]),
                ),
                intr_bk_sttlm_amt=pacs.ActiveCurrencyAndAmount(
                    value=_checked_amount(int(instruction["amount_minor"]), exponent, where),
                    ccy=ccy,
                ),
                intr_bk_sttlm_dt=XmlDate.from_date(settle_date),
                dbtr=_party(
                    pacs,
                    str(instruction["payer_id"]),
                    instruction.get("payer_bic"),
                    instruction.get("payer_lei"),
                    clearing_house,
                    clearing_house_account,
                    where,
                ),
                cdtr=_party(
                    pacs,
                    str(instruction["payee_id"]),
                    instruction.get("payee_bic"),
                    instruction.get("payee_lei"),
                    clearing_house,
                    clearing_house_account,
                    where,
                ),
            )
        )
    system = clearing_system or str(batch["rail_id"])
    header = pacs.GroupHeader93(
        msg_id=iso_text(str(batch["batch_id"]), "M"),
        cre_dt_tm=XmlDateTime.from_datetime(created),
        nb_of_txs=str(len(transactions)),
        ctrl_sum=_checked_amount(total, exponent, "control sum"),
        ttl_intr_bk_sttlm_amt=pacs.ActiveCurrencyAndAmount(
            value=_checked_amount(total, exponent, "control sum"), ccy=ccy
        ),
        intr_bk_sttlm_dt=XmlDate.from_date(settle_date),
        sttlm_inf=pacs.SettlementInstruction7(
            sttlm_mtd=pacs.SettlementMethod1Code.CLRG,
            clr_sys=pacs.ClearingSystemIdentification3Choice(prtry=iso_text(system, "S")),
        ),
        instg_agt=_house_agent(pacs, clearing_house),
    )
    return pacs.Document(
        ficdt_trf=pacs.FinancialInstitutionCreditTransferV08(
            grp_hdr=header, cdt_trf_tx_inf=transactions
        )
    )


def _house_agent(pacs: Any, house: Identity | None) -> Any:
    """The instructing agent of the group: the rail operator, where known."""
    if not house:
        return None
    house.checked("clearing house")
    if house.bic:
        fin = pacs.FinancialInstitutionIdentification18(bicfi=house.bic)
    else:
        fin = pacs.FinancialInstitutionIdentification18(lei=house.lei)
    return pacs.BranchAndFinancialInstitutionIdentification6(fin_instn_id=fin)


def pacs009_xml(
    batch: Mapping[str, Any],
    *,
    clearing_house: Identity | None = None,
    clearing_house_account: str = CLEARING_HOUSE,
    clearing_system: str | None = None,
) -> bytes:
    """The pacs.009.001.08 document of a batch as UTF-8 XML bytes."""
    from xsdata.formats.dataclass.serializers import XmlSerializer
    from xsdata.formats.dataclass.serializers.config import SerializerConfig

    document = pacs009_document(
        batch, clearing_house=clearing_house, clearing_house_account=clearing_house_account,
        clearing_system=clearing_system,
    )  # fmt: skip
    serializer = XmlSerializer(config=SerializerConfig(indent="  ", encoding="UTF-8"))
    text = serializer.render(document, ns_map={None: PACS009_NAMESPACE})
    return text.encode("utf-8")


def parse_pacs009(xml: bytes) -> Any:
    """Parse pacs.009.001.08 XML strictly (unknown elements or attributes fail)."""
    pacs = importlib.import_module(PACS009_MODULE)
    from xsdata.formats.dataclass.parsers import XmlParser
    from xsdata.formats.dataclass.parsers.config import ParserConfig

    config = ParserConfig(fail_on_unknown_properties=True, fail_on_unknown_attributes=True)
    return XmlParser(config=config).from_bytes(xml, pacs.Document)


def token_batch(batch: Mapping[str, Any]) -> dict[str, Any]:
    """The transfer-batch JSON of a token rail: values are integer strings in rail units."""
    if batch.get("export_format") != "TOKEN_BATCH":
        raise ExportError(
            f"batch {batch.get('batch_id')} is for a {batch.get('export_format')} rail, "
            "not a token rail"
        )
    transfers = []
    total = 0
    for instruction in batch["instructions"]:
        value = int(instruction["amount_rail_units"])
        if value <= 0:
            raise ExportError(f"instruction {instruction['instruction_id']}: value {value}")
        total += value
        transfers.append({
            "from": str(instruction["payer_id"]), "to": str(instruction["payee_id"]),
            "value": str(value), "instruction_id": str(instruction["instruction_id"]),
            "uetr": str(instruction["uetr"]),
        })  # fmt: skip
    if total != int(batch["control_sum_rail_units"]):
        raise ExportError(f"batch {batch['batch_id']}: control_sum_rail_units does not match")
    return {
        "batch_id": str(batch["batch_id"]), "rail_id": str(batch["rail_id"]),
        "token": batch.get("token_symbol"), "decimals": int(batch["rail_decimals"]),
        "transfers": transfers, "total": str(total),
    }  # fmt: skip
