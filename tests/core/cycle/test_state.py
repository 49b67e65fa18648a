"""A currency's netting state as a NettingState record and back: a worker that resumes
from the record closes the next cycle exactly as the worker that wrote it would have."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from clearing_core.cycle.ledger import CurrencyLedger
from clearing_core.cycle.log_fold import CurrencyTrack
from clearing_core.cycle.state import EPOCH, state_record, track_from_state
from clearing_core.encoding.codec import SingleObjectCodec
from tests.core.cycle.test_cycle import T0, context, marker, obligation

CAPS = {"DC": 2_000_000}


def closed_track() -> CurrencyTrack:
    """CNH after two closes: an obligation carried over DC's cap, a remainder kept."""
    ledger = CurrencyLedger("CNH")
    track = CurrencyTrack(ledger, partition=3)
    ledger.add(obligation("p1", "DC", "SOLAR", 1_250_000))
    ledger.add(obligation("m1", "GPU", "LEASE", 7, remainder_ppm=600_000, carry_key="ppa:P1",
                          source="METER"))  # fmt: skip
    ledger.close(marker(1), T0, context(CAPS))
    track.closed("m1", 40)
    ledger.add(obligation("p2", "DC", "SOLAR", 1_180_000, priority=4))
    ledger.add(obligation("p3", "DC", "SOLAR", 900_000, priority=2))
    ledger.close(marker(2), T0 + timedelta(minutes=5), context(CAPS))
    track.closed("m2", 97)
    return track


def the_next_cycle(track: CurrencyTrack) -> list[dict[str, Any]]:
    ledger = track.ledger
    ledger.add(obligation("p4", "SOLAR", "DC", 300_000))
    ledger.add(obligation("m2", "GPU", "LEASE", 1, remainder_ppm=500_000, carry_key="ppa:P1",
                          source="METER"))  # fmt: skip
    assert not ledger.add(obligation("p3", "DC", "SOLAR", 900_000))  # carried: a duplicate
    outcome = ledger.close(marker(3), T0 + timedelta(minutes=10), context(CAPS))
    return [*outcome.batches, outcome.report]


def test_a_resumed_track_closes_the_next_cycle_identically(codec: SingleObjectCodec) -> None:
    written = closed_track()
    assert written.ledger.carried.obligation_id  # the record has something to carry
    assert written.ledger.remainders["ppa:P1"].remainder_ppm == 600_000
    record = codec.decode(codec.encode("NettingState", state_record(written))).record
    resumed = track_from_state(record)
    assert (resumed.partition, resumed.marker_ids, resumed.marker_offsets) == (3, ["m1", "m2"],
                                                                              [40, 97])  # fmt: skip
    assert resumed.ledger.cycle_seq == 2
    assert resumed.ledger.opened_at == written.ledger.opened_at
    assert resumed.ledger.carried == written.ledger.carried
    assert resumed.ledger.remainders == written.ledger.remainders
    assert the_next_cycle(resumed) == the_next_cycle(closed_track())


def test_the_record_of_a_fresh_currency(codec: SingleObjectCodec) -> None:
    record = state_record(CurrencyTrack(CurrencyLedger("USD"), partition=0))
    assert record["opened_at"] == EPOCH  # required by the schema
    assert (record["cycle_seq"], record["marker_offset"], record["carried"]) == (0, -1, [])
    codec.encode("NettingState", record)


def test_settled_remainders_are_left_out() -> None:
    track = closed_track()
    track.ledger.remainders["ppa:P1"].remainder_ppm = 0
    assert state_record(track)["remainders"] == []
