"""The chain audit of a run: balances read from the chain against the settled
instructions read from Kafka (``clearing_core.operations.chain_audit``)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from clearing_core.encoding.codec import Codec
from clearing_core.encoding.records import InstructionStatus, SettlementBatch
from clearing_core.operations.chain_audit import mismatches, settled_moves
from clearing_core.refdata import ReferenceData
from clearing_services.kafka.clients import read_topic
from clearing_services.kafka.topics import STATUS_TOPIC, batch_topic
from clearing_services.settings import Settings
from clearing_services.settlement.token_chain import rail_balances


def audit_rail(
    settings: Settings,
    codec: Codec,
    refdata: ReferenceData,
    rail_id: str,
    before: Mapping[str, int],
    minted: Mapping[str, int],
    batch_ids: Iterable[str],
) -> list[str]:
    """The accounts of ``rail_id`` whose balance moved otherwise than the SETTLED
    instructions of ``batch_ids`` and the tokens ``minted`` to them since ``before``."""
    wanted = set(batch_ids)
    group = f"clearing-audit-{time.time_ns()}"  # never joined: reads commit nothing
    topic = batch_topic(rail_id)
    batches = [b for b in (codec.decode(r.value, topic=topic).as_record(SettlementBatch)
                           for r in read_topic(settings.bootstrap(), topic, group))
               if b["batch_id"] in wanted]  # fmt: skip
    states: dict[str, str] = {}
    for record in read_topic(settings.bootstrap(), STATUS_TOPIC, group):
        if record.value:
            status = codec.decode(record.value, topic=STATUS_TOPIC).as_record(InstructionStatus)
            if status["batch_id"] in wanted:
                states[status["instruction_id"]] = status["status"]
    after = rail_balances(settings, refdata, rail_id)
    return mismatches(before, after, settled_moves(batches, states), minted)
