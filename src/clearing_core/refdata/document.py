"""The reference-data document as a whole: its sections of records and its policy.

Why apart from ``models``: the records are the compacted topics' values, one model
per Avro record; the document is what a YAML file or a rebuild from the topics
holds, with the house-wide policy beside the sections.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from clearing_core.refdata.models import (
    Currency,
    Participant,
    PaymentKindSpec,
    PpaContract,
    PriceBook,
    Rail,
    RefRecord,
    Text,
)

DAY_MS = 86_400_000
DEDUP_WINDOW_DAYS_MAX = 3_650  # ten years: beyond any dispute window


class RefdataPolicy(RefRecord):
    """House-wide rules, one record: the document's ``policy`` mapping. Published to
    ``clearing.refdata.policy`` under ``POLICY_KEY`` only where it differs from the
    defaults, so data that leaves it out publishes and digests as before."""

    AVRO_NAME: ClassVar[str] = "clearing.RefdataPolicy"
    require_signed_events: StrictBool = False
    # Ids are remembered this long; older events are rejected, so none outlives it.
    dedup_window_days: Annotated[StrictInt, Field(ge=1, le=DEDUP_WINDOW_DAYS_MAX)] = 35

    @property
    def dedup_window_ms(self) -> int:
        """The window in milliseconds: the ingest stage's maximum event age."""
        return self.dedup_window_days * DAY_MS


POLICY_KEY = "policy"


class RefdataDocument(BaseModel):
    """The whole YAML document: a version label and one list per record type."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    version: Text
    currencies: Annotated[tuple[Currency, ...], Field(min_length=1, max_length=256)]
    rails: Annotated[tuple[Rail, ...], Field(min_length=1, max_length=1_024)]
    participants: Annotated[tuple[Participant, ...], Field(min_length=1, max_length=1_000_000)]
    contracts: Annotated[tuple[PpaContract, ...], Field(max_length=1_000_000)] = ()
    price_books: Annotated[tuple[PriceBook, ...], Field(max_length=100_000)] = ()
    payment_kinds: Annotated[tuple[PaymentKindSpec, ...], Field(max_length=64)] = ()
    policy: RefdataPolicy = RefdataPolicy()


# Section name -> (model, id field). The order is the document's and the topics'.
SECTIONS: dict[str, tuple[type[RefRecord], str]] = {
    "currencies": (Currency, "code"),
    "rails": (Rail, "rail_id"),
    "participants": (Participant, "participant_id"),
    "contracts": (PpaContract, "contract_id"),
    "price_books": (PriceBook, "price_book_id"),
    "payment_kinds": (PaymentKindSpec, "kind"),
}
