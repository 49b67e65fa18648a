"""The Avro records of the contract as TypedDicts, so that mypy checks field names and types.

Generated from schemas/*.avsc (the current versions in clearing_core.encoding.schemas's
catalog) by ``python -m clearing_core.encoding.records_gen`` (``make records``): do not edit.
tests/core/encoding/test_records.py fails when this file and the schemas differ.

Records stay plain dicts, as fastavro and the column writers take them: a TypedDict costs
nothing at run time. A field with a default in its schema is NotRequired (a writer may
leave it out and the codec writes the default; a decoded record has every field). Enums
are Literal types; timestamp-millis is an aware datetime (UTC), date a date. What a type
and its fields mean is in its schema: schemas/clearing.<type>.avsc, or for a nested type
the file of the type that defines it.
"""

from datetime import date, datetime
from typing import Literal, NotRequired, TypeAlias, TypedDict

CloseReason: TypeAlias = Literal["SCHEDULE", "MANUAL"]
ExportFormat: TypeAlias = Literal["ISO20022", "TOKEN_BATCH"]
InstructionState: TypeAlias = Literal["PENDING", "SETTLED", "FAILED"]
ReadingQuality: TypeAlias = Literal["ACTUAL", "ESTIMATED", "CORRECTED"]
ObligationSource: TypeAlias = Literal["METER", "COMPUTE", "PAYMENT", "FAILED_SETTLEMENT"]
ParticipantRole: TypeAlias = Literal[
    "GENERATOR",
    "UTILITY",
    "DATA_CENTRE",
    "AI_LAB",
    "AI_PROVIDER",
    "GPU_CLOUD",
    "CONSUMER",
    "LESSOR",
    "OM_CONTRACTOR",
    "EPC",
    "BANK",
    "OTHER",
]
StatementDirection: TypeAlias = Literal["DEBIT", "CREDIT"]
PaymentKind: TypeAlias = Literal["ELECTRICITY_BILL", "OM_FEE", "FINANCE_LEASE_RENT", "TRANSFER"]
SettlementModel: TypeAlias = Literal["HUB", "DIRECT"]
AckStatus: TypeAlias = Literal["SETTLED", "FAILED", "PENDING"]


class ComputeUsage(TypedDict):
    event_id: str
    reporter_id: str
    provider_id: str
    customer_id: str
    price_book_id: str
    sku: str
    quantity: int
    model: NotRequired[str | None]
    usage_start: datetime
    usage_end: datetime
    reported_at: datetime


class Currency(TypedDict):
    code: str
    iso_code: str
    minor_exponent: int
    name: str
    obligation_partition: NotRequired[int | None]


class CycleClose(TypedDict):
    marker_id: str
    currency: str
    reason: CloseReason
    requested_by: str
    requested_at: datetime


class TreasuryLine(TypedDict):
    from_rail: str
    to_rail: str
    amount_minor: int


class CycleTimings(TypedDict):
    netting_ms: float
    emit_ms: float
    close_to_batch_ms: float


class CycleReport(TypedDict):
    cycle_id: str
    currency: str
    cycle_seq: int
    marker_id: str
    opened_at: datetime
    closed_at: datetime
    obligation_count: int
    duplicate_count: int
    gross_minor: int
    settled_gross_minor: int
    net_minor: int
    netting_efficiency: float
    instruction_count: int
    deferred_count: int
    deferred_minor: int
    carried_in_count: int
    carried_in_minor: int
    failed_carried_count: int
    failed_carried_minor: int
    rejected_count: int
    batch_ids: list[str]
    treasury: NotRequired[list[TreasuryLine]]
    timings: CycleTimings
    refdata_digest: NotRequired[str | None]


class InstructionStatus(TypedDict):
    instruction_id: str
    batch_id: str
    rail_id: str
    currency: str
    status: InstructionState
    reason_code: NotRequired[str | None]
    bank_id: str
    bank_reference: NotRequired[str | None]
    acked_at: datetime


class MeterReading(TypedDict):
    event_id: str
    reporter_id: str
    contract_id: str
    meter_id: str
    interval_start: datetime
    interval_end: datetime
    energy_wh: int
    reading_quality: NotRequired[ReadingQuality]
    reported_at: datetime


class CarriedObligation(TypedDict):
    obligation_id: str
    debtor_id: str
    creditor_id: str
    amount_minor: int
    priority: int
    source: ObligationSource


class CarriedRemainder(TypedDict):
    carry_key: str
    debtor_id: str
    creditor_id: str
    source: ObligationSource
    priority: int
    remainder_ppm: int


class NettingState(TypedDict):
    currency: str
    cycle_seq: int
    source_partition: int
    marker_offset: int
    opened_at: datetime
    recent_marker_offsets: list[int]
    recent_marker_ids: list[str]
    carried: list[CarriedObligation]
    remainders: NotRequired[list[CarriedRemainder]]


class Obligation(TypedDict):
    obligation_id: str
    debtor_id: str
    creditor_id: str
    currency: str
    amount_minor: int
    priority: NotRequired[int]
    source: ObligationSource
    contract_id: NotRequired[str | None]
    source_event_count: NotRequired[int]
    source_digest: NotRequired[str | None]
    event_time: datetime
    remainder_ppm: NotRequired[int]
    carry_key: NotRequired[str | None]


class CurrencyAccount(TypedDict):
    currency: str
    rail_id: str
    net_debit_cap_minor: NotRequired[int | None]


class Participant(TypedDict):
    participant_id: str
    name: str
    roles: list[ParticipantRole]
    lei: NotRequired[str | None]
    bic: NotRequired[str | None]
    country: NotRequired[str | None]
    accounts: list[CurrencyAccount]
    active: NotRequired[bool]
    public_key: NotRequired[str | None]
    chain_address: NotRequired[str | None]


class StatementInstruction(TypedDict):
    instruction_id: str
    batch_id: str
    rail_id: str
    direction: StatementDirection
    counterparty_id: str
    amount_minor: int
    end_to_end_id: str


class ParticipantStatement(TypedDict):
    participant_id: str
    currency: str
    iso_currency: str
    currency_exponent: int
    cycle_id: str
    cycle_seq: int
    closed_at: datetime
    rail_id: NotRequired[str | None]
    obligations_in_count: int
    obligations_in_minor: int
    obligations_out_count: int
    obligations_out_minor: int
    net_position_minor: int
    failed_carried_net_minor: int
    deferred_net_minor: int
    instructions: list[StatementInstruction]


class Payment(TypedDict):
    event_id: str
    reporter_id: str
    payer_id: str
    payee_id: str
    kind: PaymentKind
    currency: str
    amount_minor: int
    reference: NotRequired[str | None]
    value_date: date
    reported_at: datetime


class PaymentKindSpec(TypedDict):
    kind: PaymentKind
    description: str
    priority: NotRequired[int]
    max_amount_minor: int


class Position(TypedDict):
    participant_id: str
    currency: str
    cycle_seq: int
    rail_id: NotRequired[str | None]
    receivable_minor: int
    payable_minor: int
    net_minor: int
    deferred_minor: int
    net_debit_cap_minor: NotRequired[int | None]
    as_of: datetime


class TouBand(TypedDict):
    start_minute: int
    end_minute: int
    tariff_minor_per_mwh: int


class PpaContract(TypedDict):
    contract_id: str
    seller_id: str
    buyer_id: str
    meter_ids: list[str]
    currency: str
    tariff_minor_per_mwh: int
    tou_bands: NotRequired[list[TouBand]]
    utc_offset_minutes: NotRequired[int]
    capacity_kw: NotRequired[int | None]
    valid_from: NotRequired[datetime | None]
    valid_to: NotRequired[datetime | None]
    priority: NotRequired[int]


class PriceEntry(TypedDict):
    sku: str
    price_minor_per_million: int
    max_quantity_per_event: int


class PriceBook(TypedDict):
    price_book_id: str
    provider_id: str
    currency: str
    entries: list[PriceEntry]
    customer_ids: NotRequired[list[str]]
    priority: NotRequired[int]


class Rail(TypedDict):
    rail_id: str
    name: str
    currency: str
    decimals: int
    model: SettlementModel
    export_format: ExportFormat
    cycle_seconds: int
    token_symbol: NotRequired[str | None]
    operator_bic: NotRequired[str | None]
    clearing_house_account: NotRequired[str]
    ack_timeout_seconds: NotRequired[int]
    chain: NotRequired[str | None]
    chain_id: NotRequired[int | None]
    token_address: NotRequired[str | None]
    settlement_address: NotRequired[str | None]
    clearing_house_address: NotRequired[str | None]


class Redriven(TypedDict):
    dlq_partition: int
    dlq_offset: int
    source_topic: str
    source_partition: int
    source_offset: int
    reason_code: str
    event_id: NotRequired[str | None]
    redriven_by: NotRequired[str | None]
    redriven_at: datetime


class RefdataPolicy(TypedDict):
    require_signed_events: NotRequired[bool]
    dedup_window_days: NotRequired[int]


class RefdataVersion(TypedDict):
    digest: str
    recorded_by: str
    recorded_at: datetime
    records: list[bytes]


class RecordHeader(TypedDict):
    name: str
    value: bytes


class Rejected(TypedDict):
    source_topic: str
    source_partition: int
    source_offset: int
    source_key: NotRequired[bytes | None]
    original: bytes
    reason_code: str
    message: str
    stage: str
    event_id: NotRequired[str | None]
    principal: NotRequired[str | None]
    rejected_at: datetime
    currency: NotRequired[str | None]
    headers: NotRequired[list[RecordHeader]]
    original_cut: NotRequired[bool]


class SeenEvent(TypedDict):
    event_id: str
    body_digest: str
    event_time_ms: int
    source_offset: int
    obligation_id: str


class SeenEvents(TypedDict):
    source_topic: str
    source_partition: int
    events: list[SeenEvent]


class SettlementAck(TypedDict):
    batch_id: str
    instruction_id: str
    rail_id: str
    status: AckStatus
    reason_code: NotRequired[str | None]
    reason: NotRequired[str | None]
    bank_id: str
    bank_reference: NotRequired[str | None]
    acked_at: datetime
    transaction_hash: NotRequired[str | None]
    block_number: NotRequired[int | None]


class SettlementInstruction(TypedDict):
    instruction_id: str
    sequence: int
    payer_id: str
    payee_id: str
    payer_bic: NotRequired[str | None]
    payer_lei: NotRequired[str | None]
    payee_bic: NotRequired[str | None]
    payee_lei: NotRequired[str | None]
    amount_minor: int
    amount_rail_units: int
    end_to_end_id: str
    uetr: str


class SettlementBatch(TypedDict):
    batch_id: str
    rail_id: str
    currency: str
    iso_currency: str
    cycle_seq: int
    cycle_id: str
    model: SettlementModel
    export_format: ExportFormat
    currency_exponent: int
    rail_decimals: int
    token_symbol: NotRequired[str | None]
    created_at: datetime
    instructions: list[SettlementInstruction]
    instruction_count: int
    control_sum_minor: int
    control_sum_rail_units: int
