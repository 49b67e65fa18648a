"""The column writer is byte for byte the codec's on random records of every flat
type, and refuses every column it does not take (the caller then writes the
records with the codec)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from clearing_core.encoding.avro_rows import EPOCH, RowPlan, plan_for
from clearing_core.encoding.avro_write import encode_columns
from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.encoding.schemas import SchemaCatalog
from tests.support.avro_strategies import records

CODEC = SingleObjectCodec(SchemaCatalog.load())
TYPES = ("Obligation", "MeterReading", "ComputeUsage", "Payment")
_BATCHES = st.sampled_from(TYPES).flatmap(
    lambda name: st.tuples(
        st.just(name), st.lists(records(CODEC.catalog.current(name).parsed), max_size=6)
    )
)


def plan(name: str) -> RowPlan:
    found = plan_for(CODEC.catalog.current(name))
    assert found is not None
    return found


def columns_of(name: str, batch: list[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """The batch by field, timestamps in ms (as the writer takes them)."""
    fields = plan(name).fields
    return {f: [_ms(r[f]) for r in batch] for f in fields}


def _ms(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value - EPOCH) // timedelta(milliseconds=1)
    return value


@settings(max_examples=200, deadline=None)
@given(_BATCHES)
def test_random_records_are_written_as_the_codec_writes_them(
    drawn: tuple[str, list[dict[str, Any]]],
) -> None:
    name, batch = drawn
    written = encode_columns(plan(name), columns_of(name, batch))
    if any(isinstance(v, date) and not isinstance(v, datetime) for r in batch for v in r.values()):
        assert written is None  # dates are not taken: the caller's codec writes them
        return
    assert written == [CODEC.encode(name, r) for r in batch]


def test_columns_it_does_not_take_are_refused() -> None:
    record = CODEC.decode(CODEC.encode("Obligation", _obligation())).record
    columns = columns_of("Obligation", [record])
    obligation = plan("Obligation")
    assert encode_columns(obligation, columns) == [CODEC.encode("Obligation", record)]
    for changed in ({"priority": [True]}, {"event_time": [datetime(2026, 1, 1, tzinfo=UTC)]},
                    {"amount_minor": [2**63]}, {"source": ["NOT_A_SOURCE"]},
                    {"debtor_id": [None]}, {"extra": [1]}):  # fmt: skip
        assert encode_columns(obligation, columns | changed) is None, changed
    assert encode_columns(obligation, {k: v for k, v in columns.items() if k != "source"}) is None


def _obligation() -> dict[str, Any]:
    return {
        "obligation_id": "m:agg:0f", "debtor_id": "A", "creditor_id": "B", "currency": "CNH",
        "amount_minor": 12_345, "priority": 1, "source": "METER", "contract_id": None,
        "source_event_count": 3, "source_digest": "ab" * 32,
        "event_time": datetime(2026, 11, 25, 6, 0, tzinfo=UTC), "remainder_ppm": 999_999,
        "carry_key": "ppa:K",
    }  # fmt: skip
