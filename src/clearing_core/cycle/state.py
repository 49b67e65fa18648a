"""A currency's netting state as a ``NettingState`` record, and back.

Why a record per currency: the netting worker writes it in the transaction of each
close, so a worker that takes the currency's partition over resumes where the last
close left it: the cycle sequence, the obligations deferred into the next cycle, the
pricing remainders, and the last markers (ids already closed, offsets from which to
re-read the ids already counted). The reading and writing is the worker's
(``clearing_services.netting.state``); this is only the conversion, both ways.
"""

from __future__ import annotations

from datetime import UTC, datetime

from clearing_core.cycle.ledger import Carried, CurrencyLedger, Remainder
from clearing_core.cycle.log_fold import CurrencyTrack
from clearing_core.encoding.records import NettingState

# opened_at of a ledger that has not opened a cycle yet (the record's field is required)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def state_record(track: CurrencyTrack) -> NettingState:
    """The ``NettingState`` record of a currency after its last close."""
    ledger = track.ledger
    return {
        "currency": ledger.currency,
        "cycle_seq": ledger.cycle_seq,
        "source_partition": track.partition,
        "marker_offset": track.marker_offsets[-1] if track.marker_offsets else -1,
        "opened_at": ledger.opened_at or EPOCH,
        "recent_marker_offsets": list(track.marker_offsets),
        "recent_marker_ids": list(track.marker_ids),
        "carried": ledger.carried.records(),
        "remainders": [
            {"carry_key": key, "debtor_id": r.debtor_id, "creditor_id": r.creditor_id,
             "source": r.source, "priority": r.priority, "remainder_ppm": r.remainder_ppm}
            for key, r in sorted(ledger.remainders.items())
            if r.remainder_ppm
        ],
    }  # fmt: skip


def track_from_state(record: NettingState) -> CurrencyTrack:
    """The currency's track as a ``NettingState`` record left it (``state_record``)."""
    carried = record["carried"]
    ledger = CurrencyLedger(
        record["currency"],
        cycle_seq=int(record["cycle_seq"]),
        carried=Carried(
            obligation_id=tuple(c["obligation_id"] for c in carried),
            debtor_id=tuple(c["debtor_id"] for c in carried),
            creditor_id=tuple(c["creditor_id"] for c in carried),
            amount_minor=tuple(int(c["amount_minor"]) for c in carried),
            priority=tuple(int(c["priority"]) for c in carried),
            source=tuple(c["source"] for c in carried),
        ),
        opened_at=record["opened_at"],
    )
    for entry in record.get("remainders", []):
        ledger.remainders[entry["carry_key"]] = Remainder(
            entry["debtor_id"], entry["creditor_id"], entry["source"],
            int(entry["priority"]), int(entry["remainder_ppm"]),
        )  # fmt: skip
    return CurrencyTrack(
        ledger=ledger,
        partition=int(record["source_partition"]),
        marker_offsets=list(record["recent_marker_offsets"]),
        marker_ids=list(record["recent_marker_ids"]),
    )
