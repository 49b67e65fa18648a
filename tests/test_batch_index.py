"""The acks agent's index of recent batches keeps only what an acknowledgement needs,
and stays within its bounds."""

from __future__ import annotations

from typing import Any

import pytest

from clearing_core.acks import failed_obligation
from clearing_core.codec import SingleObjectCodec
from clearing_core.cycle import rehearse_close
from clearing_services import batch_index
from clearing_services.batch_index import BatchIndex, ack_view
from tests.test_cycle import T0, context


class Consumed:
    """A record as confluent-kafka hands it over: a value and no error."""

    def __init__(self, value: bytes) -> None:
        self._value = value

    def error(self) -> None:
        return None

    def value(self) -> bytes:
        return self._value


def batches() -> list[dict[str, Any]]:
    outcome = rehearse_close(context(), T0)  # real batches, one per rail
    assert outcome is not None
    return list(outcome.batches)


def test_an_ack_gives_the_same_obligation_from_the_index(codec: SingleObjectCodec) -> None:
    index = BatchIndex("127.0.0.1:9", codec, list)
    full = batches()
    index._take([Consumed(codec.encode("SettlementBatch", b)) for b in full])
    for batch in full:
        kept = index.get(batch["batch_id"])
        assert kept == ack_view(batch)
        for line in batch["instructions"]:
            ack = {"batch_id": batch["batch_id"], "rail_id": batch["rail_id"],
                   "instruction_id": line["instruction_id"], "status": "FAILED",
                   "acked_at": T0}  # fmt: skip
            assert failed_obligation(ack, kept) == failed_obligation(ack, batch)


def test_the_oldest_batches_go_past_the_instruction_bound(
    codec: SingleObjectCodec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch_index, "INSTRUCTIONS_KEPT", 1)
    index = BatchIndex("127.0.0.1:9", codec, list)
    first, second = batches()
    for batch in (first, second):
        index._take([Consumed(codec.encode("SettlementBatch", batch))])
    assert index.get(first["batch_id"]) is None
    assert index.get(second["batch_id"]) == ack_view(second)  # the newest always stays
