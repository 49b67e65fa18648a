"""Reference-data records: frozen pydantic models mirroring ``schemas/clearing.*.avsc``.

Why pydantic and why field for field: the YAML file, the compacted
``clearing.refdata.*`` topics and the workers' in-memory snapshot must hold
exactly the same facts. Each model has the Avro record's field names, so
``to_avro()`` is what the codec encodes, and a decoded record validates back
into the same model. Types are strict (an amount written ``12.5`` or ``"12"``
is an error, not a rounding), and every string and list has a bound.

Timestamps are stored as int milliseconds since the epoch (UTC): the Avro
``timestamp-millis`` value itself, so nothing is lost in a round trip. Inputs
may be int ms, aware datetimes, ISO 8601 text with a zone, or a date, quoted
or not (UTC midnight).

Only checks about one record live here; cross-references (does the rail
exist, do two contracts share a meter) live in ``checks.py``.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    model_validator,
)

from clearing_core.money import INT64_MAX
from clearing_core.refdata import codes

PRICE_SCALE = 1_000_000  # prices are per million units; tariffs per MWh = per million Wh
CARRY_MAX = PRICE_SCALE - 1  # largest sub-minor remainder carried between events
TARIFF_MAX = 10**12  # minor units per MWh; far above any market, far below overflow
CAPACITY_KW_MAX = 10**9  # 1 TW
UTC_OFFSET_MINUTES_MAX = 14 * 60
TOU_BANDS_MAX = 48
METERS_PER_CONTRACT_MAX = 1_000
ENTRIES_PER_BOOK_MAX = 256
TEXT_LENGTH_MAX = 200
TIMESTAMP_MS_MAX = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
PRIORITY_MIN = -(2**31)
PRIORITY_MAX = 2**31 - 1  # Avro int
# Payments run through the same exact pricing path as meters and compute, at a
# unit price of PRICE_SCALE, so one payment must leave room for that product.
PAYMENT_AMOUNT_MAX = (INT64_MAX - CARRY_MAX) // PRICE_SCALE
ED25519_KEY_BYTES = 32  # a raw Ed25519 public key (RFC 8032)
ACK_TIMEOUT_SECONDS_DEFAULT = 3_600  # a PENDING instruction older than this is reported
ACK_TIMEOUT_SECONDS_MAX = 7 * 86_400
CHAIN_EMBEDDED = "embedded"  # the local chain node (clearing chain start), not a URL
CHAIN_ID_MAX = 2**53 - 1  # EIP-155 chain ids that JSON and JavaScript hold exactly
OBLIGATION_PARTITIONS_MAX = 1_024  # partitions of clearing.obligations a plan may name


class SettlementModel(StrEnum):
    HUB = "HUB"
    DIRECT = "DIRECT"


class ExportFormat(StrEnum):
    ISO20022 = "ISO20022"
    TOKEN_BATCH = "TOKEN_BATCH"


class ParticipantRole(StrEnum):
    GENERATOR = "GENERATOR"
    UTILITY = "UTILITY"
    DATA_CENTRE = "DATA_CENTRE"
    AI_LAB = "AI_LAB"
    AI_PROVIDER = "AI_PROVIDER"
    GPU_CLOUD = "GPU_CLOUD"
    CONSUMER = "CONSUMER"
    LESSOR = "LESSOR"
    OM_CONTRACTOR = "OM_CONTRACTOR"
    EPC = "EPC"
    BANK = "BANK"
    OTHER = "OTHER"


class PaymentKind(StrEnum):
    ELECTRICITY_BILL = "ELECTRICITY_BILL"
    OM_FEE = "OM_FEE"
    FINANCE_LEASE_RENT = "FINANCE_LEASE_RENT"
    TRANSFER = "TRANSFER"


def _pattern(pattern: Any, what: str) -> AfterValidator:
    def check(value: str) -> str:
        if pattern.fullmatch(value) is None:
            raise ValueError(f"{value[:80]!r} is not {what}")
        return value

    return AfterValidator(check)


def _one_line(value: str) -> str:
    if not value.strip() or "\n" in value or "\r" in value:
        raise ValueError("must be one non-blank line")
    return value


def _lei(value: str) -> str:
    if not codes.lei_is_valid(value):
        raise ValueError(f"{value[:80]!r} is not an ISO 17442 LEI (20 chars, MOD 97-10 check)")
    return value


def decode_key_bytes(value: str) -> bytes:
    """Key bytes written as hex (exactly 64 digits: 32 bytes) or standard base64."""
    text = value.strip()
    try:
        if len(text) == 2 * ED25519_KEY_BYTES and all(c in "0123456789abcdefABCDEF" for c in text):
            return bytes.fromhex(text)
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{value[:80]!r} is neither base64 nor hex") from None


def _public_key(value: str) -> str:
    """An Ed25519 public key written as base64 or hex -> its canonical base64 (so the
    YAML file, the topics and the digest hold one spelling of one key)."""
    raw = decode_key_bytes(value)
    if len(raw) != ED25519_KEY_BYTES:
        raise ValueError(
            f"an Ed25519 public key is {ED25519_KEY_BYTES} bytes, {value[:80]!r} is {len(raw)}"
        )
    return base64.b64encode(raw).decode("ascii")


_ADDRESS_TEXT = re.compile(r"0x[0-9a-fA-F]{40}")


def _chain_address(value: str) -> str:
    """A 20-byte address in its EIP-55 checksummed spelling: a mistyped digit in an
    address would pay the wrong account, and the checksum is how wallets catch it."""
    if _ADDRESS_TEXT.fullmatch(value) is None:
        raise ValueError(f"{value[:80]!r} is not a 20-byte hex address (0x and 40 hex digits)")
    expected = codes.eip55(value)
    if value != expected:
        raise ValueError(f"{value!r} fails its EIP-55 checksum (checksummed: {expected})")
    return value


def _address_not_number(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(
            "an address must be text: YAML reads an unquoted 0x... as a number, quote it"
        )
    return value


def _chain(value: str) -> str:
    if value == CHAIN_EMBEDDED or re.fullmatch(r"(https?|wss?)://[^\s/]+(/\S*)?", value):
        return value
    raise ValueError(f"{value[:80]!r} is neither 'embedded' nor a JSON-RPC URL (http://, ws://)")


_DATE_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # YAML's date form


def _timestamp_ms(value: Any) -> Any:
    """int ms, aware datetime, date (UTC midnight) or ISO text -> int ms.

    A date written as text (``"2024-01-01"``, as JSON and YAML tools write it)
    is a date, as it is unquoted in YAML, not a datetime without a zone."""
    if isinstance(value, bool):
        raise ValueError("a timestamp is not a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _DATE_TEXT.fullmatch(value):
        try:
            value = date.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a valid date: {exc}") from None
    elif isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value[:40]!r} is not an ISO 8601 timestamp") from None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"timestamp {value.isoformat()} needs a time zone, e.g. Z")
        if value.microsecond % 1000:
            raise ValueError(f"timestamp {value.isoformat()} is finer than a millisecond")
        delta = value.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
        return delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000
    if isinstance(value, date):
        return (value - date(1970, 1, 1)).days * 86_400_000
    return value  # the int validator reports the type


Id = Annotated[StrictStr, _pattern(codes.ID_PATTERN, "an id (1-64 of A-Z a-z 0-9 _ . -)")]
RailId = Annotated[
    StrictStr, _pattern(codes.RAIL_ID_PATTERN, "a rail id (1-63 of A-Z a-z 0-9 _ -)")
]
CurrencyCode = Annotated[StrictStr, _pattern(codes.CURRENCY_PATTERN, "a 3-letter currency code")]
Text = Annotated[StrictStr, Field(max_length=TEXT_LENGTH_MAX), AfterValidator(_one_line)]
Lei = Annotated[StrictStr, AfterValidator(_lei)]
Bic = Annotated[StrictStr, _pattern(codes.BIC_PATTERN, "an ISO 9362 BIC (8 or 11 chars)")]
Country = Annotated[StrictStr, _pattern(codes.COUNTRY_PATTERN, "an ISO 3166 alpha-2 code")]
TokenSymbol = Annotated[StrictStr, _pattern(codes.TOKEN_SYMBOL_PATTERN, "a token symbol")]
Priority = Annotated[StrictInt, Field(ge=PRIORITY_MIN, le=PRIORITY_MAX)]
Tariff = Annotated[StrictInt, Field(gt=0, le=TARIFF_MAX)]
PositiveInt64 = Annotated[StrictInt, Field(gt=0, le=INT64_MAX)]
TimestampMs = Annotated[StrictInt, Field(ge=0, le=TIMESTAMP_MS_MAX), BeforeValidator(_timestamp_ms)]
PublicKey = Annotated[StrictStr, Field(max_length=200), AfterValidator(_public_key)]
ChainAddress = Annotated[
    StrictStr, BeforeValidator(_address_not_number), AfterValidator(_chain_address)
]
Chain = Annotated[StrictStr, Field(max_length=TEXT_LENGTH_MAX), AfterValidator(_chain)]


class RefRecord(BaseModel):
    """A frozen record whose fields are those of one Avro record type."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    AVRO_NAME: ClassVar[str]

    def to_avro(self) -> dict[str, Any]:
        """The record as the codec encodes it (enums as names, lists, int ms)."""
        return self.model_dump(mode="json")


class Currency(RefRecord):
    AVRO_NAME: ClassVar[str] = "clearing.Currency"
    code: CurrencyCode
    iso_code: CurrencyCode
    minor_exponent: Annotated[StrictInt, Field(ge=0, le=9)]
    name: Text
    # its own partition of clearing.obligations (checks.py: required, never shared)
    obligation_partition: Annotated[StrictInt, Field(ge=0, lt=OBLIGATION_PARTITIONS_MAX)] | None = (
        None
    )


class Rail(RefRecord):
    AVRO_NAME: ClassVar[str] = "clearing.Rail"
    rail_id: RailId
    name: Text
    currency: CurrencyCode
    decimals: Annotated[StrictInt, Field(ge=0, le=18)]
    model: SettlementModel
    export_format: ExportFormat
    cycle_seconds: Annotated[StrictInt, Field(ge=1, le=86_400)]
    token_symbol: TokenSymbol | None = None
    operator_bic: Bic | None = None
    clearing_house_account: Id = "CLEARING_HOUSE"
    ack_timeout_seconds: Annotated[StrictInt, Field(ge=1, le=ACK_TIMEOUT_SECONDS_MAX)] = (
        ACK_TIMEOUT_SECONDS_DEFAULT
    )
    chain: Chain | None = None
    chain_id: Annotated[StrictInt, Field(ge=1, le=CHAIN_ID_MAX)] | None = None
    token_address: ChainAddress | None = None
    settlement_address: ChainAddress | None = None
    clearing_house_address: ChainAddress | None = None


class CurrencyAccount(RefRecord):
    AVRO_NAME: ClassVar[str] = "clearing.CurrencyAccount"
    currency: CurrencyCode
    rail_id: RailId
    net_debit_cap_minor: Annotated[StrictInt, Field(ge=0, le=INT64_MAX)] | None = None


class Participant(RefRecord):
    AVRO_NAME: ClassVar[str] = "clearing.Participant"
    participant_id: Id
    name: Text
    roles: Annotated[tuple[ParticipantRole, ...], Field(min_length=1, max_length=12)]
    lei: Lei | None = None
    bic: Bic | None = None
    country: Country | None = None
    accounts: Annotated[tuple[CurrencyAccount, ...], Field(max_length=64)]
    active: StrictBool = True
    # Verifies the signatures of the events it reports (docs/identity.md).
    public_key: PublicKey | None = None
    chain_address: ChainAddress | None = None

    @model_validator(mode="after")
    def _distinct_roles(self) -> Participant:
        if len(set(self.roles)) != len(self.roles):
            raise ValueError("a role is listed twice")
        return self


class TouBand(RefRecord):
    AVRO_NAME: ClassVar[str] = "clearing.TouBand"
    start_minute: Annotated[StrictInt, Field(ge=0, le=1439)]
    end_minute: Annotated[StrictInt, Field(ge=1, le=1440)]
    tariff_minor_per_mwh: Tariff

    @model_validator(mode="after")
    def _ordered(self) -> TouBand:
        if self.start_minute >= self.end_minute:
            raise ValueError(
                f"start_minute {self.start_minute} is not before end_minute {self.end_minute}"
                " (split a band that crosses midnight into two)"
            )
        return self


class PpaContract(RefRecord):
    AVRO_NAME: ClassVar[str] = "clearing.PpaContract"
    contract_id: Id
    seller_id: Id
    buyer_id: Id
    meter_ids: Annotated[tuple[Id, ...], Field(min_length=1, max_length=METERS_PER_CONTRACT_MAX)]
    currency: CurrencyCode
    tariff_minor_per_mwh: Tariff
    tou_bands: Annotated[tuple[TouBand, ...], Field(max_length=TOU_BANDS_MAX)] = ()
    utc_offset_minutes: Annotated[
        StrictInt, Field(ge=-UTC_OFFSET_MINUTES_MAX, le=UTC_OFFSET_MINUTES_MAX)
    ] = 0
    capacity_kw: Annotated[StrictInt, Field(gt=0, le=CAPACITY_KW_MAX)] | None = None
    valid_from: TimestampMs | None = None
    valid_to: TimestampMs | None = None
    priority: Priority = 0

    def max_tariff_minor_per_mwh(self) -> int:
        """Highest tariff any interval of this contract can get (for overflow bounds)."""
        return max([self.tariff_minor_per_mwh, *(b.tariff_minor_per_mwh for b in self.tou_bands)])


class PriceEntry(RefRecord):
    AVRO_NAME: ClassVar[str] = "clearing.PriceEntry"
    sku: Id
    price_minor_per_million: PositiveInt64
    max_quantity_per_event: PositiveInt64

    @model_validator(mode="after")
    def _no_overflow(self) -> PriceEntry:
        # The largest numerator the pricing kernel can form for one event.
        if self.max_quantity_per_event * self.price_minor_per_million + CARRY_MAX > INT64_MAX:
            raise ValueError(
                "max_quantity_per_event * price_minor_per_million overflows int64"
                f" ({self.max_quantity_per_event} * {self.price_minor_per_million})"
            )
        return self


class PriceBook(RefRecord):
    AVRO_NAME: ClassVar[str] = "clearing.PriceBook"
    price_book_id: Id
    provider_id: Id
    currency: CurrencyCode
    entries: Annotated[tuple[PriceEntry, ...], Field(min_length=1, max_length=ENTRIES_PER_BOOK_MAX)]
    customer_ids: Annotated[tuple[Id, ...], Field(max_length=1_000_000)] = ()
    priority: Priority = 0


class PaymentKindSpec(RefRecord):
    AVRO_NAME: ClassVar[str] = "clearing.PaymentKindSpec"
    kind: PaymentKind
    description: Text
    priority: Priority = 0
    max_amount_minor: Annotated[StrictInt, Field(gt=0, le=PAYMENT_AMOUNT_MAX)]
