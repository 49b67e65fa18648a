"""Reference data: currencies, rails, participants, PPA contracts, price books and
payment kinds, loaded from YAML (``docs/refdata.md``) or from the compacted
``clearing.refdata.*`` topics into one checked, immutable ``ReferenceData``."""

from clearing_core.refdata.checks import RefdataError
from clearing_core.refdata.document import RefdataDocument
from clearing_core.refdata.loader import (
    DEFAULT_REFDATA_PATH,
    dump_refdata_yaml,
    load_default_refdata,
    load_refdata,
    parse_refdata,
)
from clearing_core.refdata.models import (
    PAYMENT_AMOUNT_MAX,
    PRICE_SCALE,
    Currency,
    CurrencyAccount,
    ExportFormat,
    Participant,
    ParticipantRole,
    PaymentKind,
    PaymentKindSpec,
    PpaContract,
    PriceBook,
    PriceEntry,
    Rail,
    SettlementModel,
    TouBand,
)
from clearing_core.refdata.snapshot import REFDATA_TOPICS, RefdataRecord, ReferenceData

__all__ = [
    "DEFAULT_REFDATA_PATH",
    "PAYMENT_AMOUNT_MAX",
    "PRICE_SCALE",
    "REFDATA_TOPICS",
    "Currency",
    "CurrencyAccount",
    "ExportFormat",
    "Participant",
    "ParticipantRole",
    "PaymentKind",
    "PaymentKindSpec",
    "PpaContract",
    "PriceBook",
    "PriceEntry",
    "Rail",
    "RefdataDocument",
    "RefdataError",
    "RefdataRecord",
    "ReferenceData",
    "SettlementModel",
    "TouBand",
    "dump_refdata_yaml",
    "load_default_refdata",
    "load_refdata",
    "parse_refdata",
]
