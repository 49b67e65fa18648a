"""What every ISO 20022 document of the project shares: rendering a pyiso20022
binding to XML that is checked against its official XSD before anyone sees it,
strict parsing of one that comes in, and the amount and time conversions.

Why one place: pacs.009 out, pacs.002 in and out, camt.054 out must all be
validated the same way (DESIGN §11: an invalid document is never written, one
read is validated before it is believed), and amounts must be converted with
the same integer arithmetic.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import TypeVar

from xsdata.formats.dataclass.parsers import XmlParser
from xsdata.formats.dataclass.parsers.config import ParserConfig
from xsdata.formats.dataclass.serializers import XmlSerializer
from xsdata.formats.dataclass.serializers.config import SerializerConfig
from xsdata.models.datatype import XmlDateTime

from clearing_core.exports.documents import (
    ISO_AMOUNT_DIGITS_MAX,
    ISO_AMOUNT_FRACTION_MAX,
    ExportError,
    minor_to_decimal,
)
from clearing_core.exports.iso_schemas import validate

NAMESPACE_PREFIX = "urn:iso:std:iso:20022:tech:xsd:"
T = TypeVar("T")


def namespace(message: str) -> str:
    """The XML namespace of a message, e.g. ``pacs.002.001.10``."""
    return NAMESPACE_PREFIX + message


def render(document: object, message: str) -> bytes:
    """UTF-8 XML of a binding's ``Document``, validated against the official XSD of
    ``message`` (raises ``ExportError`` naming the element: nothing is returned)."""
    serializer = XmlSerializer(config=SerializerConfig(indent="  ", encoding="UTF-8"))
    data = serializer.render(document, ns_map={None: namespace(message)}).encode("utf-8")
    validate(data, message)
    return data


def parse(data: bytes, message: str, document_type: type[T]) -> T:
    """A document of ``message`` read strictly: validated against the XSD first, then
    bound with unknown elements and attributes refused."""
    validate(data, message)
    config = ParserConfig(fail_on_unknown_properties=True, fail_on_unknown_attributes=True)
    try:
        return XmlParser(config=config).from_bytes(data, document_type)
    except Exception as exc:  # xsdata raises ParserError and conversion errors alike
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ExportError(f"{message}: cannot be read: {first}") from None


def utc(value: object) -> datetime:
    """A timestamp of a record (datetime, epoch milliseconds or ISO text) in UTC."""
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    raise ExportError(f"{value!r} is not a timestamp")


def xml_time(value: datetime) -> XmlDateTime:
    """ISODateTime in UTC, to the millisecond (the banks' usual precision)."""
    at = utc(value)
    return XmlDateTime.from_datetime(at.replace(microsecond=at.microsecond // 1000 * 1000))


def checked_amount(amount_minor: int, exponent: int, what: str) -> Decimal:
    """An amount for ActiveCurrencyAndAmount: non-negative, at most 5 decimals and 18
    digits (the XSD's facets), exact."""
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


def decimal_to_minor(value: Decimal, exponent: int, where: str) -> int:
    """An ISO amount in minor units, refused where it has more places than the currency
    (``1.005`` USD is not an amount of money, and rounding would lose value)."""
    scaled = value.scaleb(exponent)
    if scaled != scaled.to_integral_value():
        raise ExportError(f"{where}: {value} has more than {exponent} decimals")
    return int(scaled)
