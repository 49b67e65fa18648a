"""The chain audit of a run: balances read from the chain against the settled
instructions read from Kafka (``clearing_core.operations.chain_audit``).

Why it waits for a quiet moment rather than auditing a list of cycles: cycles go on
closing while the audit reads (the scheduler closes a currency on its timer, and
the failures the banks carried from the last cycle are netted in the next), and a
batch the chain executed but the audit did not count would show as a mismatch. So
the audit reads the balances twice, at the start and at the end, each time at a
quiet moment (every instruction of the rail acknowledged, no batch appearing
while the balances are read), and counts every batch between the two readings.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from clearing_core.cycle.acks import FINAL_STATES
from clearing_core.encoding.codec import Codec
from clearing_core.encoding.records import InstructionStatus, SettlementBatch
from clearing_core.operations.chain_audit import mismatches, settled_moves
from clearing_core.refdata import ReferenceData
from clearing_services.kafka.clients import read_topic
from clearing_services.kafka.topics import STATUS_TOPIC, batch_topic
from clearing_services.settings import Settings
from clearing_services.settlement.token_chain import rail_balances

QUIET_WAIT_SECONDS_MAX = 120.0
QUIET_POLL_SECONDS = 1.0


def _batches(
    settings: Settings, codec: Codec, rail_id: str, earlier: Iterable[str]
) -> list[SettlementBatch]:
    skip = set(earlier)
    group = f"clearing-audit-{time.time_ns()}"  # never joined: reads commit nothing
    topic = batch_topic(rail_id)
    decoded = (codec.decode(r.value, topic=topic).as_record(SettlementBatch)
               for r in read_topic(settings.bootstrap(), topic, group))  # fmt: skip
    return [b for b in decoded if b["batch_id"] not in skip]


def _states(settings: Settings, codec: Codec, batch_ids: set[str]) -> dict[str, str]:
    states: dict[str, str] = {}
    group = f"clearing-audit-{time.time_ns()}"
    for record in read_topic(settings.bootstrap(), STATUS_TOPIC, group):
        if record.value:
            status = codec.decode(record.value, topic=STATUS_TOPIC).as_record(InstructionStatus)
            if status["batch_id"] in batch_ids:
                states[status["instruction_id"]] = status["status"]
    return states


def _snapshot(
    settings: Settings, codec: Codec, rail_id: str, earlier: Iterable[str]
) -> tuple[list[SettlementBatch], dict[str, str], bool]:
    """The run's batches, their instructions' states, and whether all are final."""
    batches = _batches(settings, codec, rail_id, earlier)
    states = _states(settings, codec, {b["batch_id"] for b in batches})
    final = all(states.get(i["instruction_id"]) in FINAL_STATES
                for b in batches for i in b["instructions"])  # fmt: skip
    return batches, states, final


def quiet_reading(
    settings: Settings, codec: Codec, refdata: ReferenceData, rail_id: str,
    earlier: Iterable[str] = (),
) -> tuple[list[SettlementBatch], dict[str, str], dict[str, int]] | None:  # fmt: skip
    """The rail's batches (but ``earlier``), their instructions' states and the
    balances, read at a moment when every instruction has its final acknowledgement
    and no batch appears while the balances are read; None if no such moment came
    in ``QUIET_WAIT_SECONDS_MAX``."""
    deadline = time.monotonic() + QUIET_WAIT_SECONDS_MAX
    while True:
        batches, _, final = _snapshot(settings, codec, rail_id, earlier)
        if final:
            balances = rail_balances(settings, refdata, rail_id)
            again, states, still_final = _snapshot(settings, codec, rail_id, earlier)
            if still_final and len(again) == len(batches):
                return again, states, balances
        if time.monotonic() > deadline:
            return None
        time.sleep(QUIET_POLL_SECONDS)


def audit_rail(
    settings: Settings, codec: Codec, refdata: ReferenceData, rail_id: str,
    before: Mapping[str, int], minted: Mapping[str, int], earlier: Iterable[str],
) -> list[str]:  # fmt: skip
    """The accounts of ``rail_id`` whose balance moved otherwise than the SETTLED
    instructions of the batches since ``before`` was read (every batch but those in
    ``earlier``, read in the same quiet moment) and the tokens ``minted`` to them."""
    reading = quiet_reading(settings, codec, refdata, rail_id, earlier)
    if reading is None:
        return [f"{rail_id}: no quiet moment in {QUIET_WAIT_SECONDS_MAX:.0f} s (instructions "
                "still unacknowledged): the balances cannot be audited"]  # fmt: skip
    batches, states, after = reading
    return mismatches(before, after, settled_moves(batches, states), minted)
