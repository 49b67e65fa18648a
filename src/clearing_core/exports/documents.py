"""What a settlement bank or token rail receives: pacs.009 XML and token-batch JSON.

Pure document building (a decoded ``SettlementBatch`` in, XML bytes or a JSON
dict out; the pacs.009 document itself is built in ``pacs009``, which imports this
module, never the other way); reading the batch from
Kafka is the CLI's job. Amounts are converted from integer minor units with
integer arithmetic only, so an export never gains or loses a unit.

The ``CLEARING_HOUSE`` account of a rail is an account the rail operator keeps
for the clearing house, so in ISO 20022 it is identified by the rail's operator
(``operator_bic`` in the reference data) and, for rails without one, by a
configured clearing-house BIC or LEI (see ``docs/bank-exports.md``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import TypedDict

from clearing_core.encoding.records import SettlementBatch
from clearing_core.errors import InputError

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


# "from" is a keyword, hence the functional form.
TokenTransfer = TypedDict(
    "TokenTransfer", {"from": str, "to": str, "value": str, "instruction_id": str, "uetr": str}
)


class TokenBatch(TypedDict):
    """The transfer-batch JSON of a token rail."""

    batch_id: str
    rail_id: str
    token: str | None
    decimals: int
    transfers: list[TokenTransfer]
    total: str


def token_batch(batch: SettlementBatch) -> TokenBatch:
    """The transfer-batch JSON of a token rail: values are integer strings in rail units."""
    if batch.get("export_format") != "TOKEN_BATCH":
        raise ExportError(
            f"batch {batch.get('batch_id')} is for a {batch.get('export_format')} rail, "
            "not a token rail"
        )
    transfers: list[TokenTransfer] = []
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
