"""The acks agent's index of recent batches keeps only what an acknowledgement needs,
with each instruction's state, stays within its bounds, and stops on a record it
cannot read instead of leaving it out."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest

from clearing_core.cycle.acks import AckOutcome, apply_ack
from clearing_core.cycle.ledger import rehearse_close
from clearing_core.encoding.codec import SingleObjectCodec
from clearing_services.settlement import batch_index
from clearing_services.settlement.batch_index import BatchIndex, UnreadableRecordError, ack_view
from tests.core.cycle.test_cycle import T0, context
from tests.support.events import settlement_ack


class Consumed:
    """A record as confluent-kafka hands it over: a value and no error."""

    def __init__(self, value: bytes, topic: str = "clearing.settlement.batches.x") -> None:
        self._value, self._topic = value, topic

    def error(self) -> None:
        return None

    def value(self) -> bytes:
        return self._value

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 7

    def timestamp(self) -> tuple[int, int]:
        return (1, int(T0.timestamp() * 1000))


def batches() -> list[dict[str, Any]]:
    outcome = rehearse_close(context(), T0)  # real batches, one per rail
    assert outcome is not None
    return list(outcome.batches)


ack = partial(settlement_ack, at=T0)


def index_of(codec: SingleObjectCodec, full: list[dict[str, Any]]) -> BatchIndex:
    index = BatchIndex("127.0.0.1:9", codec, list)
    index._take([Consumed(codec.encode("SettlementBatch", b)) for b in full])  # type: ignore[list-item]
    return index


def test_an_ack_gives_the_same_outcome_from_the_index(codec: SingleObjectCodec) -> None:
    full = batches()
    index = index_of(codec, full)
    for batch in full:
        kept = index.get(batch["batch_id"])
        assert kept == ack_view(batch)
        for line in batch["instructions"]:
            for status in ("SETTLED", "FAILED"):
                a = ack(batch, line, status)
                assert apply_ack(a, kept, None) == apply_ack(a, batch, None)


def test_states_read_or_recorded_are_kept_with_their_batch(codec: SingleObjectCodec) -> None:
    first, second = batches()
    index = index_of(codec, [first])
    line = first["instructions"][0]
    outcome = apply_ack(ack(first, line, "SETTLED"), index.get(first["batch_id"]), None)
    assert isinstance(outcome, AckOutcome)
    assert outcome.status is not None
    index.record([outcome.status])
    assert index.state_of(first["batch_id"], line["instruction_id"]) == "SETTLED"
    # a state read before its batch (another rail's partition ahead) waits for it
    early = {
        **outcome.status,
        "batch_id": second["batch_id"],
        "instruction_id": second["instructions"][0]["instruction_id"],
        "status": "FAILED",
    }
    index._take([Consumed(codec.encode("InstructionStatus", early), "clearing.settlement.status")])  # type: ignore[list-item]
    assert index.state_of(second["batch_id"], early["instruction_id"]) is None
    index._take([Consumed(codec.encode("SettlementBatch", second))])  # type: ignore[list-item]
    assert index.state_of(second["batch_id"], early["instruction_id"]) == "FAILED"


def test_an_unreadable_batch_or_state_stops_the_index(codec: SingleObjectCodec) -> None:
    index = BatchIndex("127.0.0.1:9", codec, list)
    with pytest.raises(UnreadableRecordError, match=r"clearing.settlement.status@0:7: unreadable"):
        index._take([Consumed(b"\xc3\x01garbage", "clearing.settlement.status")])  # type: ignore[list-item]
    cycle = codec.encode("CycleClose", {"marker_id": "m", "currency": "CNH", "reason": "MANUAL",
                                        "requested_by": "t", "requested_at": T0})  # fmt: skip
    with pytest.raises(UnreadableRecordError, match="a CycleClose record"):
        index._take([Consumed(cycle)])  # type: ignore[list-item]


def test_the_oldest_batches_go_past_the_instruction_bound(
    codec: SingleObjectCodec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch_index, "INSTRUCTIONS_KEPT", 1)
    index = BatchIndex("127.0.0.1:9", codec, list)
    first, second = batches()
    for batch in (first, second):
        index._take([Consumed(codec.encode("SettlementBatch", batch))])  # type: ignore[list-item]
    assert index.get(first["batch_id"]) is None
    assert index.get(second["batch_id"]) == ack_view(second)  # the newest always stays


def test_instructions_waiting_past_their_rails_timeout_are_overdue(
    codec: SingleObjectCodec,
) -> None:
    first, second = batches()
    index = index_of(codec, [first, second])
    settled = apply_ack(ack(first, first["instructions"][0], "SETTLED"), index.get(
        first["batch_id"]), None)  # fmt: skip
    assert isinstance(settled, AckOutcome)
    assert settled.status is not None
    index.record([settled.status])
    created_ms = int(T0.timestamp() * 1000)
    timeouts = {first["rail_id"]: 600, second["rail_id"]: 3_600}
    assert index.overdue(created_ms + 600_000, timeouts) == {}  # not yet past 600 s
    late = index.overdue(created_ms + 601_000, timeouts)
    assert late == {first["rail_id"]: len(first["instructions"]) - 1}
    assert index.overdue(created_ms + 3_601_000, {}) == {}  # a rail without a timeout
