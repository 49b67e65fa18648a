"""Reading the cycles, the batches and the instruction states off their topics into
the core's ``FinalityBook`` (``clearing cycles``, the demo's summary)."""

from __future__ import annotations

import time
from collections.abc import Iterable

from clearing_core.encoding.codec import Codec
from clearing_core.encoding.records import CycleReport, InstructionStatus, SettlementBatch
from clearing_core.operations.finality import CycleFinality, FinalityBook
from clearing_core.refdata import ReferenceData
from clearing_services.kafka.clients import read_topic
from clearing_services.kafka.topics import CYCLES_TOPIC, STATUS_TOPIC, batch_topic


def read_finality(
    bootstrap: str, codec: Codec, rails: Iterable[str], cycles_per_currency: int
) -> FinalityBook:
    """The last ``cycles_per_currency`` cycles of each currency, their batches and the
    states of their instructions, as the topics stand now."""
    group = f"clearing-cycles-{time.time_ns()}"  # never joined: reads commit nothing
    book = FinalityBook(cycles_per_currency=cycles_per_currency)
    for record in read_topic(bootstrap, CYCLES_TOPIC, group):
        book.add_cycle(codec.decode(record.value, topic=CYCLES_TOPIC).as_record(CycleReport))
    wanted = {b for kept in book.reports.values() for r in kept.values() for b in r["batch_ids"]}
    for rail in sorted(rails):
        topic = batch_topic(rail)
        for record in read_topic(bootstrap, topic, group):
            batch = codec.decode(record.value, topic=topic).as_record(SettlementBatch)
            if batch["batch_id"] in wanted:
                book.add_batch(batch)
    for record in read_topic(bootstrap, STATUS_TOPIC, group):
        if record.value:  # a compacted topic may hold tombstones
            status = codec.decode(record.value, topic=STATUS_TOPIC).as_record(InstructionStatus)
            if status["batch_id"] in wanted:
                book.add_status(status)
    return book


def finality(
    bootstrap: str, codec: Codec, refdata: ReferenceData, currency: str | None, last: int
) -> list[CycleFinality]:
    """Each kept cycle with its finality per rail, judged now."""
    book = read_finality(bootstrap, codec, refdata.rails, last)
    timeouts = {rail_id: rail.ack_timeout_seconds for rail_id, rail in refdata.rails.items()}
    return book.cycles(int(time.time() * 1000), timeouts, currency)
