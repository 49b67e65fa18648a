"""The fold of clearing.obligations that the netting worker and ``clearing replay`` share:
runs counted in bulk equal records counted one by one, markers close once, every
record it cannot count is reported with a reason, contexts are asked per cycle."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from clearing_core.cycle.context import CycleContext
from clearing_core.cycle.ledger import SEEN_CYCLES, CurrencyLedger, CycleOutcome
from clearing_core.cycle.log_fold import Closing, LogFold, LogSlice
from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.encoding.schemas import SchemaCatalog
from tests.core.cycle.test_cycle import context

CODEC = SingleObjectCodec(SchemaCatalog.load())
T0_MS = int(datetime(2026, 11, 24, 9, tzinfo=UTC).timestamp() * 1000)
PARTIES = ("DC", "SOLAR", "LEASE", "GPU")


@dataclass
class Sink:
    closes: list[tuple[str, int, list[bytes]]] = field(default_factory=list)
    rejects: list[tuple[int, str]] = field(default_factory=list)
    counted_n: int = 0
    duplicates: int = 0

    def rejected(self, index: int, reason_code: str, text: str) -> None:
        self.rejects.append((index, reason_code))

    def counted(self, currency: str, count: int, duplicates: int, open_count: int) -> None:
        self.counted_n += count
        self.duplicates += duplicates

    def rejections(self, closing: Closing) -> int:
        return 0

    def closed(self, closing: Closing, outcome: CycleOutcome) -> None:
        encoded = [CODEC.encode("SettlementBatch", b) for b in outcome.batches]
        self.closes.append((closing.marker["marker_id"], outcome.cycle_seq, encoded))


def contexts(asked: list[tuple[str, int]] | None = None) -> Any:
    def context_for(currency: str, cycle_seq: int) -> CycleContext:
        if asked is not None:
            asked.append((currency, cycle_seq))
        return context({"DC": 900_000})

    return context_for


def obligation(oid: str, debtor: str, creditor: str, amount: int, ppm: int = 0) -> bytes:
    return CODEC.encode("Obligation", {
        "obligation_id": oid, "debtor_id": debtor, "creditor_id": creditor, "currency": "CNH",
        "amount_minor": amount, "priority": 0, "source": "PAYMENT", "contract_id": None,
        "source_event_count": 1, "source_digest": None,
        "event_time": datetime(2026, 11, 24, tzinfo=UTC), "remainder_ppm": ppm,
        "carry_key": f"k:{debtor}:{creditor}" if ppm else None,
    })  # fmt: skip


def marker(marker_id: str) -> bytes:
    return CODEC.encode("CycleClose", {
        "marker_id": marker_id, "currency": "CNH", "reason": "MANUAL", "requested_by": "t",
        "requested_at": datetime(2026, 11, 24, tzinfo=UTC),
    })  # fmt: skip


def fold(values: list[bytes], cuts: list[int], asked: list[tuple[str, int]] | None = None) -> Sink:
    """Feed ``values`` (one partition, offsets from 0) as slices cut at ``cuts``."""
    sink = Sink()
    log = LogFold(CODEC, contexts(asked), sink)
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(values)}), len(values)]
    for lo, hi in itertools.pairwise(bounds):
        n = hi - lo
        log.feed(LogSlice(values[lo:hi], [0] * n, list(range(lo, hi)),
                          [T0_MS + i for i in range(lo, hi)]))  # fmt: skip
    return sink


log_entries = st.lists(
    st.one_of(
        st.tuples(st.just("o"), st.integers(0, 30), st.sampled_from(PARTIES),
                  st.sampled_from(PARTIES), st.integers(0, 500_000), st.integers(0, 999_999)),
        st.tuples(st.just("m"), st.integers(0, 4)),
    ),
    max_size=60,
)  # fmt: skip


def encoded(entries: list[Any]) -> list[bytes]:
    out = []
    for e in entries:
        if e[0] == "m":
            out.append(marker(f"m{e[1]}"))
        elif e[2] != e[3]:
            out.append(obligation(f"o{e[1]}", e[2], e[3], e[4], e[5] if e[4] % 3 == 0 else 0))
    return out


@given(log_entries, st.lists(st.integers(0, 60), max_size=8))
def test_any_slicing_folds_like_one_record_at_a_time(entries: list[Any], cuts: list[int]) -> None:
    values = encoded(entries)
    whole = fold(values, cuts)
    one_by_one = fold(values, list(range(len(values))))
    assert whole.closes == one_by_one.closes
    assert (whole.counted_n, whole.duplicates) == (one_by_one.counted_n, one_by_one.duplicates)


@given(log_entries)
def test_the_fold_closes_as_a_ledger_driven_by_hand(entries: list[Any]) -> None:
    """The naive reference: decode each record, add it or close on a new marker."""
    values = encoded(entries)
    ledger, seen_markers, closes = CurrencyLedger("CNH"), list[str](), []
    for offset, value in enumerate(values):
        decoded = CODEC.decode(value)
        when = datetime.fromtimestamp((T0_MS + offset) / 1000, tz=UTC)
        if decoded.name == "Obligation":
            ledger.add(decoded.record, when)
        elif decoded.record["marker_id"] not in seen_markers[-SEEN_CYCLES:]:
            seen_markers.append(decoded.record["marker_id"])
            outcome = ledger.close(decoded.record, when, context({"DC": 900_000}))
            batches = [CODEC.encode("SettlementBatch", b) for b in outcome.batches]
            closes.append((decoded.record["marker_id"], outcome.cycle_seq, batches))
    assert fold(values, [7, 20]).closes == closes


def test_a_marker_closes_once_within_the_recent_cycles_and_contexts_are_asked_per_cycle() -> None:
    asked: list[tuple[str, int]] = []
    values = [obligation("a", "DC", "SOLAR", 100), marker("m1"), marker("m1"),
              obligation("b", "SOLAR", "GPU", 50), marker("m2")]  # fmt: skip
    sink = fold(values, [2], asked)
    assert [(m, seq) for m, seq, _ in sink.closes] == [("m1", 1), ("m2", 2)]
    assert asked == [("CNH", 1), ("CNH", 2)]
    # the bound is the worker's: a marker id older than the last SEEN_CYCLES closes again
    later = [marker(f"n{i}") for i in range(SEEN_CYCLES)]
    sink = fold([marker("m1"), *later, marker("m1")], [])
    assert [m for m, _, _ in sink.closes] == ["m1", *[f"n{i}" for i in range(SEEN_CYCLES)], "m1"]


def test_records_it_cannot_count_are_reported_with_a_reason_and_the_rest_still_counts() -> None:
    payment = CODEC.encode("Payment", {
        "event_id": "p", "reporter_id": "DC", "payer_id": "DC", "payee_id": "SOLAR",
        "kind": "OM_FEE", "currency": "CNH", "amount_minor": 1, "reference": None,
        "value_date": datetime(2026, 11, 24, tzinfo=UTC).date(),
        "reported_at": datetime(2026, 11, 24, tzinfo=UTC),
    })  # fmt: skip
    values = [obligation("a", "DC", "SOLAR", 100), b"\x00junk", payment, b"",
              obligation("b", "DC", "SOLAR", 20), marker("m1")]  # fmt: skip
    sink = fold(values, [])
    assert [index for index, _ in sink.rejects] == [1, 2, 3]
    reasons = dict(sink.rejects)
    assert reasons[2] == "WRONG_SCHEMA"
    assert reasons[1] != "WRONG_SCHEMA"
    assert reasons[3] != "WRONG_SCHEMA"
    assert sink.counted_n == 2
    ((_, _, batches),) = sink.closes
    assert sum(CODEC.decode(b).record["control_sum_minor"] for b in batches) == 240
