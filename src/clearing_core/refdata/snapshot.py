"""``ReferenceData``: one immutable, checked, indexed version of the reference data.

Why a snapshot with a digest: ingest and netting workers on different hosts
must price and net with the same facts. Each builds its snapshot from the
compacted ``clearing.refdata.*`` topics (or the YAML file) and can compare
``digest``: a SHA-256 over a canonical serialisation (records sorted by id,
keys sorted, timestamps in ms), independent of file layout and record order.
The ``version`` label is for people and is not part of the digest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, NamedTuple, TypeVar

from clearing_core.refdata.checks import RefdataError, find_problems
from clearing_core.refdata.document import POLICY_KEY, SECTIONS, RefdataDocument, RefdataPolicy
from clearing_core.refdata.models import (
    Currency,
    CurrencyAccount,
    PaymentKindSpec,
    PpaContract,
    PriceEntry,
    Rail,
    RefRecord,
)
from clearing_core.refdata.parse import document_from_data

DIGEST_FORMAT = "clearing.refdata/1"
# Record type -> compacted topic that carries it, keyed by the record id.
REFDATA_TOPICS: Mapping[str, str] = MappingProxyType({
    "clearing.Currency": "clearing.refdata.currencies",
    "clearing.Rail": "clearing.refdata.rails",
    "clearing.Participant": "clearing.refdata.participants",
    "clearing.PpaContract": "clearing.refdata.contracts",
    "clearing.PriceBook": "clearing.refdata.pricebooks",
    "clearing.PaymentKindSpec": "clearing.refdata.paymentkinds",
    "clearing.RefdataPolicy": "clearing.refdata.policy",
})  # fmt: skip
_T = TypeVar("_T")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECTION_BY_TYPE = {model.AVRO_NAME: section for section, (model, _) in SECTIONS.items()}
_DEFAULT_POLICY = RefdataPolicy()
# Optional fields added after DIGEST_FORMAT 1: left out of the digest while unset, so
# reference data that does not use them keeps the digest it had.
_LATER_OPTIONAL_FIELDS = frozenset({"public_key"})


class RefdataRecord(NamedTuple):
    """One record to publish: Avro type name, Kafka key (the id) and the Avro dict."""

    record_type: str
    key: str
    value: dict[str, Any]

    @property
    def topic(self) -> str:
        return REFDATA_TOPICS[self.record_type]


def _key(record: RefRecord, section: str) -> str:
    return str(getattr(record, SECTIONS[section][1]))


def _sorted_document(document: RefdataDocument) -> RefdataDocument:
    """The same document with every section in id order (the canonical order)."""
    update: dict[str, tuple[RefRecord, ...]] = {}
    for section in SECTIONS:
        records: tuple[RefRecord, ...] = getattr(document, section)
        update[section] = tuple(sorted(records, key=lambda r: _key(r, section)))
    return document.model_copy(update=update)


class ReferenceData:
    """A checked snapshot of the reference data with the indexes the pipeline needs."""

    __slots__ = (
        "_accounts", "_contract_by_meter", "_customers", "_cycle_seconds", "_frozen", "_prices",
        "_rails_by_currency", "contracts", "currencies", "digest", "document", "participants",
        "payment_kinds", "price_books", "rails", "version",
    )  # fmt: skip

    def __init__(self, document: RefdataDocument) -> None:
        problems = find_problems(document)
        if problems:
            raise RefdataError(problems)
        document = _sorted_document(document)
        self.document = document
        self.version = document.version
        self.currencies = _index(document.currencies, lambda c: c.code)
        self.rails = _index(document.rails, lambda r: r.rail_id)
        self.participants = _index(document.participants, lambda p: p.participant_id)
        self.contracts = _index(document.contracts, lambda c: c.contract_id)
        self.price_books = _index(document.price_books, lambda b: b.price_book_id)
        self.payment_kinds = _index(document.payment_kinds, lambda k: str(k.kind))
        self._rails_by_currency = {
            code: tuple(r for r in document.rails if r.currency == code) for code in self.currencies
        }
        self._cycle_seconds = {
            code: min(r.cycle_seconds for r in rails)
            for code, rails in self._rails_by_currency.items()
        }
        self._contract_by_meter = {m: c for c in document.contracts for m in c.meter_ids}
        self._prices = {
            (b.price_book_id, e.sku): e for b in document.price_books for e in b.entries
        }
        self._customers = {b.price_book_id: frozenset(b.customer_ids) for b in document.price_books}
        self._accounts = {
            (p.participant_id, a.currency): a for p in document.participants for a in p.accounts
        }
        self.digest = _digest(document)
        self._frozen = True

    def __setattr__(self, name: str, value: Any) -> None:
        if getattr(self, "_frozen", False):
            raise AttributeError("ReferenceData is immutable")
        object.__setattr__(self, name, value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ReferenceData) and other.digest == self.digest

    def __hash__(self) -> int:
        return hash(self.digest)

    def __repr__(self) -> str:
        return (
            f"ReferenceData(version={self.version!r}, digest={self.digest[:12]}, "
            f"participants={len(self.participants)}, contracts={len(self.contracts)})"
        )

    # Lookups: None where the key is unknown, so validation can say why.

    def rails_for_currency(self, currency: str) -> tuple[Rail, ...]:
        return self._rails_by_currency.get(currency, ())

    def contract_for_meter(self, meter_id: str) -> PpaContract | None:
        return self._contract_by_meter.get(meter_id)

    def price_entry(self, price_book_id: str, sku: str) -> PriceEntry | None:
        return self._prices.get((price_book_id, sku))

    def book_lists_customer(self, price_book_id: str, customer_id: str) -> bool:
        """Whether the book's customer list allows ``customer_id``; an empty list allows
        anyone (the currency account is checked separately)."""
        customers = self._customers.get(price_book_id)
        return customers is not None and (not customers or customer_id in customers)

    def payment_kind(self, kind: str) -> PaymentKindSpec | None:
        return self.payment_kinds.get(kind)

    def account(self, participant_id: str, currency: str) -> CurrencyAccount | None:
        return self._accounts.get((participant_id, currency))

    @property
    def policy(self) -> RefdataPolicy:
        """House-wide rules (``require_signed_events``)."""
        return self.document.policy

    # Settlement set-up: these raise, since asking about a missing account is a bug.

    def rail_for(self, participant_id: str, currency: str) -> Rail:
        """The rail a participant settles ``currency`` on."""
        return self.rails[self._account(participant_id, currency).rail_id]

    def cap_minor(self, participant_id: str, currency: str) -> int | None:
        """Net debit cap in minor units; None means uncapped."""
        return self._account(participant_id, currency).net_debit_cap_minor

    def cycle_seconds_for(self, currency: str) -> int:
        """Cycle length of a currency: the shortest ``cycle_seconds`` of its rails."""
        seconds = self._cycle_seconds.get(currency)
        if seconds is None:
            raise RefdataError([f"unknown currency {currency!r}"])
        return seconds

    def currency(self, code: str) -> Currency:
        found = self.currencies.get(code)
        if found is None:
            raise RefdataError([f"unknown currency {code!r}"])
        return found

    def obligation_partition(self, code: str) -> int:
        """The currency's own partition of clearing.obligations, by the plan (never
        hashed): where its obligations and its cycle-close markers go."""
        partition = self.currency(code).obligation_partition
        assert partition is not None  # checks.py: every currency of a document has one
        return partition

    @property
    def obligation_partitions(self) -> int:
        """How many partitions clearing.obligations needs for the plan."""
        return 1 + max(self.obligation_partition(code) for code in self.currencies)

    def _account(self, participant_id: str, currency: str) -> CurrencyAccount:
        account = self._accounts.get((participant_id, currency))
        if account is None:
            raise RefdataError([f"participant {participant_id!r} has no {currency} account"])
        return account

    # Publishing and rebuilding.

    def to_records(self) -> Iterator[RefdataRecord]:
        """Every record, section by section in id order, ready for the codec and the
        compacted topics (``RefdataRecord.topic``)."""
        for section, (model, _) in SECTIONS.items():
            for record in getattr(self.document, section):
                yield RefdataRecord(model.AVRO_NAME, _key(record, section), record.to_avro())
        if self.document.policy != _DEFAULT_POLICY:
            policy = self.document.policy
            yield RefdataRecord(policy.AVRO_NAME, POLICY_KEY, policy.to_avro())

    @classmethod
    def from_records(
        cls, records: Iterable[tuple[str, str, Mapping[str, Any] | None]], *, version: str
    ) -> ReferenceData:
        """Rebuild from ``(record type, key, decoded record or None)`` in log order.

        As on a compacted topic, a later value of a key replaces an earlier one and
        None (a tombstone) deletes it. Record types may be given with or without the
        ``clearing.`` namespace.
        """
        sections: dict[str, dict[str, Mapping[str, Any]]] = {s: {} for s in SECTIONS}
        policy: dict[str, Mapping[str, Any]] = {}  # absent (or deleted): the defaults
        for record_type, key, value in records:
            full_type = record_type if "." in record_type else f"clearing.{record_type}"
            if full_type == RefdataPolicy.AVRO_NAME:
                _take_policy(policy, key, value)
                continue
            section = _SECTION_BY_TYPE.get(full_type)
            if section is None:
                raise RefdataError([f"records: unknown record type {record_type!r}"])
            if value is None:
                sections[section].pop(key, None)
                continue
            id_field = SECTIONS[section][1]
            if value.get(id_field) != key:
                raise RefdataError(
                    [f"records: key {key!r} of {full_type} differs from {id_field} "
                     f"{value.get(id_field)!r}"]
                )  # fmt: skip
            sections[section][key] = value
        data = {"version": version, **{s: list(v.values()) for s, v in sections.items()},
                **policy}  # fmt: skip
        return cls(document_from_data(data))

    def to_data(self) -> dict[str, Any]:
        """The document as plain data (Avro dicts), e.g. for ``dump_refdata_yaml``;
        contract validity timestamps become aware datetimes for readability."""
        data: dict[str, Any] = {"version": self.version}
        for section in SECTIONS:
            data[section] = [r.to_avro() for r in getattr(self.document, section)]
        for contract in data["contracts"]:
            for field in ("valid_from", "valid_to"):
                if contract[field] is not None:
                    contract[field] = _EPOCH + timedelta(milliseconds=contract[field])
        for participant in data["participants"]:
            for field in _LATER_OPTIONAL_FIELDS:
                if participant.get(field) is None:
                    participant.pop(field, None)
        if self.document.policy != _DEFAULT_POLICY:
            data["policy"] = self.document.policy.to_avro()
        return data


def _index(records: Iterable[_T], key: Callable[[_T], str]) -> Mapping[str, _T]:
    return MappingProxyType({key(r): r for r in records})


def _take_policy(policy: dict[str, Mapping[str, Any]], key: str, value: Any) -> None:
    """A ``clearing.RefdataPolicy`` record of the log: the latest wins, None deletes."""
    if key != POLICY_KEY:
        raise RefdataError([f"records: policy key {key!r} is not {POLICY_KEY!r}"])
    policy.clear()
    if value is not None:
        policy["policy"] = value


def _canonical(record: RefRecord) -> dict[str, Any]:
    values = record.to_avro()
    for field in _LATER_OPTIONAL_FIELDS:
        if field in values and values[field] is None:
            del values[field]
    return values


def _digest(document: RefdataDocument) -> str:
    canonical: dict[str, Any] = {"format": DIGEST_FORMAT}
    for section in SECTIONS:
        canonical[section] = [_canonical(r) for r in getattr(document, section)]
    if document.policy != _DEFAULT_POLICY:
        canonical["policy"] = document.policy.to_avro()
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()
