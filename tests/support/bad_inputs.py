"""A corpus of bad inputs for the ingest stage: every kind of broken record a
participant (or a bug, or an attacker) can put on an event topic, each with the
exact reason code it must get in ``clearing.dlq``, plus valid events to mix in.

The reference data is tests/data/pipeline-refdata.yaml with a few additions
that make every business rule reachable (an inactive participant, a contract
with no capacity, one not yet valid, a price book with a customer list, and no
``TRANSFER`` payment kind). Records are built around ``now_ms`` (the Kafka log
time the validator compares against), so a broker test can build them right
before it sends them.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from clearing_core.encoding.avro_write import varint as zigzag
from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.encoding.schemas import HEADER_BYTES, SchemaCatalog
from clearing_core.refdata import ReferenceData, parse_refdata
from tests.support import events

REPO = Path(__file__).resolve().parents[2]
METER, COMPUTE, PAYMENT = (f"clearing.events.{k}" for k in ("meter", "compute", "payment"))
EXPECTED_TYPE = {METER: "MeterReading", COMPUTE: "ComputeUsage", PAYMENT: "Payment"}
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
PAYMENT_KINDS = ("ELECTRICITY_BILL", "OM_FEE", "FINANCE_LEASE_RENT", "TRANSFER")  # Avro order


@dataclass(frozen=True)
class Sent:
    """One record as produced to the broker; ``value`` None is a tombstone."""

    topic: str
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class BadInput:
    """A named kind of bad input and the reason code it must be rejected with.
    ``broker`` is False where a broker with default limits refuses the record itself."""

    kind: str
    sent: Sent
    reason: str
    broker: bool = True


@dataclass(frozen=True)
class Corpus:
    """Valid ``anchors`` come first (the duplicate cases repeat them); then each bad
    input is followed by one valid ``filler`` event."""

    anchors: list[Sent]
    bad: list[BadInput]
    fillers: list[Sent]

    def interleaved(self, *, broker: bool = False) -> Iterator[Sent | BadInput]:
        yield from self.anchors
        for case, filler in zip(self.bad, self.fillers, strict=True):
            if case.broker or not broker:
                yield case
            yield filler

    @property
    def valid(self) -> list[Sent]:
        return [*self.anchors, *self.fillers]


# -- reference data ----------------------------------------------------------------------


def refdata_document() -> dict[str, Any]:
    """tests/data/pipeline-refdata.yaml plus what makes every rule reachable."""
    doc = copy.deepcopy(_pipeline_document())
    doc["version"] = "bad-input-corpus"
    doc["participants"].append(
        {"participant_id": "AILAB-SF-05", "name": "Redwood Intelligence LLC", "roles": ["AI_LAB"],
         "bic": "ABCDUS33", "active": False,
         "accounts": [{"currency": "USD", "rail_id": "usd-swift"}]},
    )  # fmt: skip
    doc["contracts"] += [
        {"contract_id": "PPA-QH07-LC01", "seller_id": "SOLAR-QINGHAI-07",
         "buyer_id": "LEASECO-HK-01", "meter_ids": ["MTR-QH07-02"], "currency": "CNH",
         "tariff_minor_per_mwh": 30_000},  # no capacity: only int64 bounds the energy
        {"contract_id": "PPA-QH07-2099", "seller_id": "SOLAR-QINGHAI-07",
         "buyer_id": "DC-SHENZHEN-01", "meter_ids": ["MTR-QH07-09"], "currency": "CNH",
         "tariff_minor_per_mwh": 30_000, "valid_from": "2099-01-01T00:00:00Z"},
    ]  # fmt: skip
    doc["price_books"].append(
        {"price_book_id": "PB-GPUCLOUD-SG-02-VIP", "provider_id": "GPUCLOUD-SG-02",
         "currency": "USD", "customer_ids": ["DC-SHENZHEN-01"],
         "entries": [{"sku": "output_token", "price_minor_per_million": 900,
                      "max_quantity_per_event": 50_000_000}]},
    )  # fmt: skip
    doc["payment_kinds"] = [k for k in doc["payment_kinds"] if k["kind"] != "TRANSFER"]
    return doc


@functools.cache
def _pipeline_document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "tests/data/pipeline-refdata.yaml").read_text())
    return loaded


def refdata() -> ReferenceData:
    return parse_refdata(refdata_document())


def write_refdata(path: Path) -> Path:
    """The corpus reference data as a YAML file (for ``clearing refdata publish``)."""
    path.write_text(yaml.safe_dump(refdata_document(), sort_keys=False))
    return path


# -- valid records -----------------------------------------------------------------------


def _at(now_ms: int) -> datetime:
    return datetime.fromtimestamp(now_ms / 1000, tz=UTC).replace(microsecond=0)


def meter(now_ms: int, event_id: str, **changes: Any) -> dict[str, Any]:
    return events.meter_reading(event_id, at=_at(now_ms) - timedelta(minutes=1), **changes)


def compute(now_ms: int, event_id: str, **changes: Any) -> dict[str, Any]:
    t = _at(now_ms) - timedelta(minutes=1)
    return events.compute_usage(
        event_id, at=t, **{"usage_start": t - timedelta(minutes=5), **changes}
    )


def payment(now_ms: int, event_id: str, **changes: Any) -> dict[str, Any]:
    t = _at(now_ms) - timedelta(minutes=1)
    return events.payment(event_id, at=t, **{"reference": "LEASE-1", **changes})


_KEY_FIELD = {METER: "contract_id", COMPUTE: "provider_id", PAYMENT: "payer_id"}
_TYPES = {"MeterReading": METER, "ComputeUsage": COMPUTE, "Payment": PAYMENT}


class _Builder:
    """Encodes records of the corpus, keyed the way DESIGN section 4 says."""

    def __init__(self, codec: SingleObjectCodec, now_ms: int, prefix: str) -> None:
        self.codec, self.now_ms, self.prefix = codec, now_ms, prefix

    def id(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def sent(self, record_type: str, record: dict[str, Any], key: bytes | None = None) -> Sent:
        topic = _TYPES[record_type]
        key = str(record[_KEY_FIELD[topic]]).encode() if key is None else key
        return Sent(topic, key, self.codec.encode(record_type, record))

    def meter(self, name: str, key: bytes | None = None, **changes: Any) -> Sent:
        return self.sent("MeterReading", meter(self.now_ms, self.id(name), **changes), key)

    def compute(self, name: str, key: bytes | None = None, **changes: Any) -> Sent:
        return self.sent("ComputeUsage", compute(self.now_ms, self.id(name), **changes), key)

    def payment(self, name: str, key: bytes | None = None, **changes: Any) -> Sent:
        return self.sent("Payment", payment(self.now_ms, self.id(name), **changes), key)


# -- hand-made Avro bodies (what no schema-checking encoder will write) -------------------


def raw_string(data: bytes) -> bytes:
    return zigzag(len(data)) + data


def raw_payment(catalog: SchemaCatalog, record: dict[str, Any], kind_index: int | None = None,
                reported_at_ms: int | None = None) -> bytes:  # fmt: skip
    """A Payment written field by field, so a test can put any enum index or long in it."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    kind = PAYMENT_KINDS.index(record["kind"]) if kind_index is None else kind_index
    reported = reported_at_ms
    if reported is None:
        reported = (record["reported_at"] - epoch) // timedelta(milliseconds=1)
    body = b"".join(raw_string(str(record[f]).encode()) for f in
                    ("event_id", "reporter_id", "payer_id", "payee_id"))  # fmt: skip
    body += zigzag(kind) + raw_string(record["currency"].encode())
    body += zigzag(record["amount_minor"])
    body += (
        b"\x00"
        if record["reference"] is None
        else b"\x02" + raw_string(record["reference"].encode())
    )
    body += zigzag((record["value_date"] - epoch.date()).days) + zigzag(reported)
    return catalog.current("Payment").header + body


# -- the corpus --------------------------------------------------------------------------


def build(codec: SingleObjectCodec, now_ms: int, prefix: str = "bi") -> Corpus:
    """The whole corpus for a log time of ``now_ms``; event ids start with ``prefix``."""
    b = _Builder(codec, now_ms, prefix)
    anchors = [b.meter("anchor-m"), b.compute("anchor-c"), b.payment("anchor-p")]
    bad: list[BadInput] = []
    for group in _GROUPS:
        bad += group(b, anchors)
    makers: list[Callable[[str], Sent]] = [b.meter, b.compute, b.payment]
    fillers = [makers[i % 3](f"ok-{i}") for i in range(len(bad))]
    seen = {(c.sent.topic, c.sent.key, c.sent.value) for c in bad}
    assert len(seen) == len(bad), "two cases send the same record"
    assert len({c.kind for c in bad}) == len(bad), "two cases share a kind"
    return Corpus(anchors, bad, fillers)


def _bytes_cases(b: _Builder, anchors: list[Sent]) -> list[BadInput]:
    good = b.meter("bytes-base")
    assert good.value is not None
    header = good.value[:HEADER_BYTES]
    utf8 = b.meter("utf8-XXXX").value
    assert utf8 is not None
    pay = payment(b.now_ms, b.id("raw-kind"))
    catalog = b.codec.catalog
    late = payment(b.now_ms, b.id("raw-time"))
    sent = [
        ("truncated-body", Sent(METER, good.key, good.value[:-3]), "TRUNCATED_AVRO"),
        ("truncated-header", Sent(METER, b"PPA-T1", good.value[:6]), "TRUNCATED_AVRO"),
        ("cut-inside-event-id", Sent(METER, good.key, good.value[: HEADER_BYTES + 4]),
         "TRUNCATED_AVRO"),
        ("unknown-fingerprint", Sent(METER, good.key, b"\xc3\x01" + b"\xee" * 8
                                     + good.value[HEADER_BYTES:]), "UNKNOWN_SCHEMA"),
        ("bad-magic-json", Sent(METER, good.key, b'{"event_id": "x", "energy_wh": 1}'),
         "BAD_MAGIC"),
        ("empty-value", Sent(METER, b"PPA-EMPTY", b""), "EMPTY_VALUE"),
        ("tombstone", Sent(METER, b"PPA-TOMBSTONE", None), "EMPTY_VALUE"),
        ("trailing-garbage", Sent(METER, good.key, good.value + b"\x00\x01"), "TRAILING_BYTES"),
        ("non-utf8-event-id", Sent(METER, good.key, utf8.replace(b"XXXX", b"\xff\xfe\xc3\x28")),
         "INVALID_UTF8"),
        ("garbage-body", Sent(METER, good.key, header + b"\xff" * 30), "MALFORMED_AVRO"),
        ("enum-index-out-of-range", Sent(PAYMENT, b"DC-SHENZHEN-01",
                                         raw_payment(catalog, pay, kind_index=9)),
         "MALFORMED_AVRO"),
        # beyond what a datetime holds: the ingest stage reads times as int ms, so it
        # is judged as what it is, a time far in the future
        ("timestamp-beyond-datetime", Sent(PAYMENT, b"DC-SHENZHEN-01",
                                           raw_payment(catalog, late, reported_at_ms=2**62)),
         "TIMESTAMP_IN_FUTURE"),
    ]  # fmt: skip
    cases = [BadInput(kind, s, reason) for kind, s, reason in sent]
    huge = Sent(METER, b"PPA-HUGE", header + b"\x00" * (1 << 20))
    cases.append(BadInput("record-over-1-mib", huge, "RECORD_TOO_LARGE", broker=False))
    return cases


def _envelope_cases(b: _Builder, anchors: list[Sent]) -> list[BadInput]:
    conflict = payment(b.now_ms, b.id("anchor-p"), amount_minor=120_001)
    position = {"participant_id": "DC-SHENZHEN-01", "currency": "CNH", "cycle_seq": 1,
                "rail_id": None, "receivable_minor": 0, "payable_minor": 5, "net_minor": -5,
                "deferred_minor": 0, "net_debit_cap_minor": None,
                "as_of": _at(b.now_ms)}  # fmt: skip
    wrong_type = b.payment("wrong-topic")
    return [
        BadInput("payment-on-meter-topic", Sent(METER, wrong_type.key, wrong_type.value),
                 "WRONG_SCHEMA"),
        BadInput("position-on-payment-topic", Sent(PAYMENT, b"DC-SHENZHEN-01",
                                                   b.codec.encode("Position", position)),
                 "WRONG_SCHEMA"),
        BadInput("missing-key", _rekey(b.meter("no-key"), None), "MISSING_KEY"),
        BadInput("empty-key", _rekey(b.payment("empty-key"), b""), "MISSING_KEY"),
        BadInput("meter-key-not-contract", b.meter("key-m", key=b"PPA-QH07-LC01"),
                 "KEY_MISMATCH"),
        BadInput("compute-key-not-provider", b.compute("key-c", key=b"DC-SHENZHEN-01"),
                 "KEY_MISMATCH"),
        BadInput("payment-key-not-payer", b.payment("key-p", key=b"LEASECO-HK-01"),
                 "KEY_MISMATCH"),
        BadInput("exact-duplicate", anchors[0], "DUPLICATE_EVENT"),
        BadInput("same-id-other-body", b.sent("Payment", conflict), "DUPLICATE_EVENT_CONFLICT"),
    ]  # fmt: skip


def _rekey(sent: Sent, key: bytes | None) -> Sent:
    return Sent(sent.topic, key, sent.value)


def _field_cases(b: _Builder, anchors: list[Sent]) -> list[BadInput]:
    def sent(record_type: str, record: dict[str, Any]) -> Sent:
        return b.sent(record_type, record)

    n = b.now_ms
    return [
        BadInput("event-id-too-long", sent("MeterReading", meter(n, "E" * 129)), "FIELD_TOO_LONG"),
        BadInput("event-id-600k-chars", sent("Payment", payment(n, "E" * 600_000)),
                 "FIELD_TOO_LONG"),
        BadInput("meter-id-too-long", b.meter("long-meter", meter_id="M" * 65), "FIELD_TOO_LONG"),
        BadInput("empty-event-id", sent("ComputeUsage", compute(n, "")), "EMPTY_FIELD"),
        BadInput("empty-reporter", b.payment("empty-reporter", reporter_id=""), "EMPTY_FIELD"),
        BadInput("nul-in-event-id", sent("MeterReading", meter(n, b.id("nul\x00id"))),
                 "UNPRINTABLE_FIELD"),
        BadInput("zero-width-space-in-reporter",
                 b.compute("zwsp", reporter_id="GPUCLOUD-SG-02\u200b"), "UNPRINTABLE_FIELD"),
        BadInput("newline-in-sku", b.compute("newline", sku="output_token\n"),
                 "UNPRINTABLE_FIELD"),
    ]  # fmt: skip


def _quantity_cases(b: _Builder, anchors: list[Sent]) -> list[BadInput]:
    no_cap: dict[str, Any] = {"contract_id": "PPA-QH07-LC01", "meter_id": "MTR-QH07-02"}
    return [
        BadInput("negative-energy", b.meter("neg-energy", energy_wh=-1), "NEGATIVE_QUANTITY"),
        BadInput("negative-compute-quantity", b.compute("neg-q", quantity=-5),
                 "NEGATIVE_QUANTITY"),
        BadInput("energy-above-capacity", b.meter("cap", energy_wh=25_000_001),
                 "QUANTITY_ABOVE_LIMIT"),
        BadInput("compute-above-per-event-limit", b.compute("q-limit", quantity=50_000_001),
                 "QUANTITY_ABOVE_LIMIT"),
        BadInput("payment-above-kind-limit", b.payment("p-limit", amount_minor=2_000_000_001),
                 "QUANTITY_ABOVE_LIMIT"),
        BadInput("energy-times-tariff-overflows-int64",
                 b.meter("overflow", energy_wh=10**15, **no_cap), "QUANTITY_ABOVE_LIMIT"),
        BadInput("energy-int64-max", b.meter("e-max", energy_wh=INT64_MAX, **no_cap),
                 "QUANTITY_ABOVE_LIMIT"),
        BadInput("payment-int64-max", b.payment("p-max", amount_minor=INT64_MAX),
                 "QUANTITY_ABOVE_LIMIT"),
        BadInput("zero-payment", b.payment("zero", amount_minor=0), "NON_POSITIVE_AMOUNT"),
        BadInput("negative-payment", b.payment("neg", amount_minor=-120_000),
                 "NON_POSITIVE_AMOUNT"),
        BadInput("payment-int64-min", b.payment("p-min", amount_minor=INT64_MIN),
                 "NON_POSITIVE_AMOUNT"),
    ]  # fmt: skip


def _refdata_cases(b: _Builder, anchors: list[Sent]) -> list[BadInput]:
    return [
        BadInput("unknown-payee", b.payment("payee", payee_id="NOBODY-01"),
                 "UNKNOWN_PARTICIPANT"),
        BadInput("inactive-payee", b.payment("inactive", payee_id="AILAB-SF-05", currency="USD"),
                 "INACTIVE_PARTICIPANT"),
        BadInput("unknown-contract", b.meter("contract", contract_id="PPA-NONE"),
                 "UNKNOWN_CONTRACT"),
        BadInput("unknown-meter", b.meter("meter", meter_id="MTR-NONE"), "UNKNOWN_METER"),
        BadInput("meter-not-on-contract", b.meter("other-meter", meter_id="MTR-QH07-02"),
                 "METER_NOT_ON_CONTRACT"),
        BadInput("unknown-price-book", b.compute("book", price_book_id="PB-NONE"),
                 "UNKNOWN_PRICE_BOOK"),
        BadInput("unknown-sku", b.compute("sku", sku="input_token"), "UNKNOWN_SKU"),
        BadInput("customer-not-on-book", b.compute("vip", price_book_id="PB-GPUCLOUD-SG-02-VIP",
                                                   customer_id="LEASECO-HK-01"),
                 "CUSTOMER_NOT_ALLOWED"),
        BadInput("unknown-currency", b.payment("eur", currency="EUR"), "UNKNOWN_CURRENCY"),
        BadInput("currency-not-allowed", b.payment("usd", currency="USD"),
                 "CURRENCY_NOT_ALLOWED"),
        BadInput("meter-reporter-not-party", b.meter("m-rep", reporter_id="GPUCLOUD-SG-02"),
                 "REPORTER_NOT_PARTY"),
        BadInput("compute-reporter-not-provider",
                 b.compute("c-rep", reporter_id="DC-SHENZHEN-01"), "REPORTER_NOT_PARTY"),
        BadInput("payment-reported-by-payee", b.payment("p-rep", reporter_id="LEASECO-HK-01"),
                 "REPORTER_NOT_PARTY"),
        BadInput("self-payment", b.payment("self", payee_id="DC-SHENZHEN-01"), "SELF_PAYMENT"),
        BadInput("compute-customer-is-provider", b.compute("self-c", customer_id="GPUCLOUD-SG-02"),
                 "SELF_PAYMENT"),
        BadInput("payment-kind-not-offered", b.payment("kind", kind="TRANSFER"),
                 "UNKNOWN_PAYMENT_KIND"),
    ]  # fmt: skip


def _time_cases(b: _Builder, anchors: list[Sent]) -> list[BadInput]:
    t = _at(b.now_ms) - timedelta(minutes=1)
    year_ago, far = t - timedelta(days=365), datetime(2200, 1, 1, tzinfo=UTC)
    return [
        BadInput("interval-ends-before-start",
                 b.meter("reversed", interval_start=t, interval_end=t - timedelta(minutes=15)),
                 "BAD_INTERVAL"),
        BadInput("interval-too-long", b.meter("long", interval_start=t - timedelta(days=2)),
                 "BAD_INTERVAL"),
        BadInput("usage-window-empty", b.compute("empty-window", usage_start=t),
                 "BAD_INTERVAL"),
        BadInput("interval-a-year-ago",
                 b.meter("old", interval_start=year_ago - timedelta(minutes=15),
                         interval_end=year_ago, reported_at=year_ago), "TIMESTAMP_TOO_OLD"),
        BadInput("payment-reported-in-2200", b.payment("future", reported_at=far),
                 "TIMESTAMP_IN_FUTURE"),
        BadInput("usage-in-2200", b.compute("future-c", usage_start=far - timedelta(minutes=5),
                                            usage_end=far, reported_at=far),
                 "TIMESTAMP_IN_FUTURE"),
        BadInput("contract-not-yet-valid",
                 b.meter("not-valid", contract_id="PPA-QH07-2099", meter_id="MTR-QH07-09"),
                 "CONTRACT_NOT_VALID_AT"),
    ]  # fmt: skip


_GROUPS: list[Callable[[_Builder, list[Sent]], list[BadInput]]] = [
    _bytes_cases, _envelope_cases, _field_cases, _quantity_cases, _refdata_cases, _time_cases,
]  # fmt: skip
