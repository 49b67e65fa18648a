"""The column-wise writer is byte for byte the codec's on random records of every
flat type, and hands every record it does not take to the codec."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearing_core.avro_rows import plan_for
from clearing_core.avro_write import encode_records
from clearing_core.codec import EncodeError, SingleObjectCodec
from clearing_core.schemas import SchemaCatalog
from tests.support.avro_strategies import records

CODEC = SingleObjectCodec(SchemaCatalog.load())
TYPES = ("Obligation", "MeterReading", "ComputeUsage", "Payment")
_BATCHES = st.sampled_from(TYPES).flatmap(
    lambda name: st.tuples(
        st.just(name), st.lists(records(CODEC.catalog.current(name).parsed), max_size=6)
    )
)


def writer(name: str) -> Any:
    plan = plan_for(CODEC.catalog.current(name))
    assert plan is not None
    return lambda batch: encode_records(plan, batch, lambda r: CODEC.encode(name, r))


@settings(max_examples=200, deadline=None)
@given(_BATCHES)
def test_random_records_are_written_as_the_codec_writes_them(
    drawn: tuple[str, list[dict[str, Any]]],
) -> None:
    name, batch = drawn
    assert writer(name)(batch) == [CODEC.encode(name, r) for r in batch]


def test_values_it_does_not_take_go_to_the_codec() -> None:
    obligation = CODEC.decode(CODEC.encode("Obligation", _obligation())).record
    write = writer("Obligation")
    fine = write([obligation])
    assert fine == [CODEC.encode("Obligation", obligation)]
    # a default the codec fills in, and values the codec converts or refuses
    for changed in ({"priority": True}, {"event_time": 1_795_000_000_000},
                    {"event_time": datetime(2026, 1, 1)}):  # fmt: skip
        record = obligation | changed
        assert write([obligation, record]) == [fine[0], CODEC.encode("Obligation", record)]
    for bad in ({"amount_minor": 2**63}, {"source": "NOT_A_SOURCE"}, {"extra": 1}):
        with pytest.raises(EncodeError):
            write([obligation, obligation | bad])


def _obligation() -> dict[str, Any]:
    return {
        "obligation_id": "m:agg:0f", "debtor_id": "A", "creditor_id": "B", "currency": "CNH",
        "amount_minor": 12_345, "priority": 1, "source": "METER", "contract_id": None,
        "source_event_count": 3, "source_digest": "ab" * 32,
        "event_time": datetime(2026, 11, 25, 6, 0, tzinfo=UTC), "remainder_ppm": 999_999,
        "carry_key": "ppa:K",
    }  # fmt: skip
