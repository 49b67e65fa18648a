"""A realistic, seeded stream of events for a reference-data set: meter readings
under PPAs, compute usage against price books, payments, and on request some
bad and duplicate events, each labelled with the reason the ingest stage must
give. Used by ``clearing produce --generate``, the demo and the tests.

Deterministic: the same seed, reference data and clock give the same events.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from clearing_core.refdata import ReferenceData

MINUTE_MS = 60_000
INTERVAL_MS = 15 * MINUTE_MS
KIND_WEIGHTS = (("meter", 50), ("compute", 35), ("payment", 15))


@dataclass(frozen=True)
class GeneratedEvent:
    """An event and what ingest must do with it (``expect`` None: accept)."""

    kind: str  # meter | compute | payment
    record: dict[str, Any]
    expect: str | None = None
    corrupt: bool = False  # send truncated bytes instead of the encoding


def _ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


class EventGenerator:
    """Draws events from the reference data; one instance per stream."""

    def __init__(self, refdata: ReferenceData, seed: int, now_ms: int, prefix: str = "gen") -> None:
        self.refdata = refdata
        self.rng = random.Random(seed)
        self.now_ms = now_ms
        self.prefix = prefix
        self.count = 0
        active = {p for p, v in refdata.participants.items() if v.active}
        self.contracts = sorted(
            c for c, v in refdata.contracts.items() if {v.seller_id, v.buyer_id} <= active
        )
        self.books = sorted(b for b, v in refdata.price_books.items() if v.provider_id in active)
        self.holders = {
            ccy: sorted(p for p in active if refdata.account(p, ccy)) for ccy in refdata.currencies
        }
        self.accepted: list[GeneratedEvent] = []

    def _id(self, kind: str) -> str:
        self.count += 1
        return f"{self.prefix}-{kind}-{self.count:09d}"

    def meter(self) -> GeneratedEvent:
        contract = self.refdata.contracts[self.rng.choice(self.contracts)]
        end = self.now_ms - self.now_ms % INTERVAL_MS - INTERVAL_MS * self.rng.randrange(0, 8)
        cap_wh = (contract.capacity_kw or 10_000) * 1000 // 4
        record = {
            "event_id": self._id("mtr"), "reporter_id": contract.seller_id,
            "contract_id": contract.contract_id, "meter_id": self.rng.choice(contract.meter_ids),
            "interval_start": _ts(end - INTERVAL_MS), "interval_end": _ts(end),
            "energy_wh": self.rng.randrange(0, max(1, cap_wh // 4)), "reading_quality": "ACTUAL",
            "reported_at": _ts(self.now_ms),
        }  # fmt: skip
        return GeneratedEvent("meter", record)

    def compute(self) -> GeneratedEvent:
        book = self.refdata.price_books[self.rng.choice(self.books)]
        entry = self.rng.choice(book.entries)
        customers = [
            c for c in (book.customer_ids or self.holders[book.currency])
            if c != book.provider_id and c in self.holders[book.currency]
        ]  # fmt: skip
        record = {
            "event_id": self._id("cmp"), "reporter_id": book.provider_id,
            "provider_id": book.provider_id, "customer_id": self.rng.choice(customers),
            "price_book_id": book.price_book_id, "sku": entry.sku,
            "quantity": self.rng.randrange(1, max(2, entry.max_quantity_per_event // 50)),
            "model": None, "usage_start": _ts(self.now_ms - MINUTE_MS),
            "usage_end": _ts(self.now_ms), "reported_at": _ts(self.now_ms),
        }  # fmt: skip
        return GeneratedEvent("compute", record)

    def payment(self) -> GeneratedEvent:
        currency = self.rng.choice(sorted(self.refdata.currencies))
        payer, payee = self.rng.sample(self.holders[currency], 2)
        spec = self.refdata.payment_kinds[self.rng.choice(sorted(self.refdata.payment_kinds))]
        record = {
            "event_id": self._id("pay"), "reporter_id": payer, "payer_id": payer,
            "payee_id": payee, "kind": str(spec.kind), "currency": currency,
            "amount_minor": self.rng.randrange(1, max(2, spec.max_amount_minor // 10_000)),
            "reference": f"INV-{self.count:08d}", "reported_at": _ts(self.now_ms),
            "value_date": date.fromtimestamp(self.now_ms / 1000),
        }  # fmt: skip
        return GeneratedEvent("payment", record)

    def valid(self) -> GeneratedEvent:
        makers: dict[str, Callable[[], GeneratedEvent]] = {
            "meter": self.meter, "compute": self.compute, "payment": self.payment,
        }  # fmt: skip
        kind = self.rng.choices([k for k, _ in KIND_WEIGHTS], [w for _, w in KIND_WEIGHTS])[0]
        event = makers[kind]()
        self.accepted.append(event)
        return event

    def bad(self) -> GeneratedEvent:
        """One bad event of a random kind, labelled with the reason code ingest must give."""
        base = self.meter()
        record = dict(base.record)
        choice = self.rng.randrange(6)
        if choice == 0:
            record["contract_id"] = "PPA-DOES-NOT-EXIST"
            return GeneratedEvent("meter", record, "UNKNOWN_CONTRACT")
        if choice == 1:
            contract = self.refdata.contracts[record["contract_id"]]
            outsider = next(p for p in self.holders[contract.currency]
                            if p not in {contract.seller_id, contract.buyer_id})  # fmt: skip
            record["reporter_id"] = outsider
            return GeneratedEvent("meter", record, "REPORTER_NOT_PARTY")
        if choice == 2:
            record["energy_wh"] = -1_000
            return GeneratedEvent("meter", record, "NEGATIVE_QUANTITY")
        if choice == 3:
            record["reported_at"] = _ts(self.now_ms + 3_600_000)
            return GeneratedEvent("meter", record, "TIMESTAMP_IN_FUTURE")
        if choice == 4:
            payment = dict(self.payment().record)
            payment["payee_id"] = payment["payer_id"]
            return GeneratedEvent("payment", payment, "SELF_PAYMENT")
        return GeneratedEvent("meter", record, "TRUNCATED_AVRO", corrupt=True)

    def duplicate(self) -> GeneratedEvent | None:
        """An accepted event sent again, unchanged."""
        if not self.accepted:
            return None
        original = self.rng.choice(self.accepted)
        return GeneratedEvent(original.kind, original.record, "DUPLICATE_EVENT")

    def events(
        self, count: int, bad_ratio: float = 0.0, duplicate_ratio: float = 0.0
    ) -> list[GeneratedEvent]:
        out: list[GeneratedEvent] = []
        while len(out) < count:
            roll = self.rng.random()
            if roll < bad_ratio:
                out.append(self.bad())
            elif roll < bad_ratio + duplicate_ratio and (dup := self.duplicate()) is not None:
                out.append(dup)
            else:
                out.append(self.valid())
        return out
