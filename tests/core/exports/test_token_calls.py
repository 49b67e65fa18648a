"""A token batch as settlement-contract calls, and the chain's events as acks."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest

from clearing_core.exports.documents import ExportError
from clearing_core.exports.token_calls import (
    Inclusion,
    Outcome,
    acks_of_call,
    call_key,
    token_calls,
)
from tests.core.exports.test_exports import make_batch

ADDRESS = {name: "0x" + hashlib.sha256(name.encode()).hexdigest()[:40]
           for name in ("SOLAR", "LEASECO", "DC", "CLEARING_HOUSE")}  # fmt: skip
MINED = Inclusion("0x" + "ab" * 32, 42, 1_790_000_000_000)


def _batch(rows: int = 5) -> dict[str, Any]:
    names = ["SOLAR", "LEASECO", "DC", "CLEARING_HOUSE"]
    flows = [(names[i % 4], names[(i + 1) % 4], 1_000 + i, None, None) for i in range(rows)]
    return make_batch("cnh-stable", "CNH", "CNY", 2, 6, flows, fmt="TOKEN_BATCH", token="CNHT")


def test_calls_split_a_batch_under_fixed_keys_in_token_units() -> None:
    batch = _batch(5)
    calls = token_calls(batch, ADDRESS, calls_max=2)  # type: ignore[arg-type]
    assert [len(c.amounts) for c in calls] == [2, 2, 1]
    assert [c.key for c in calls] == [call_key(batch["batch_id"], p) for p in range(3)]
    assert calls[0].key == hashlib.sha256(b"cnh-stable-CNH-00000001#0").digest()
    flat = [a for c in calls for a in c.amounts]
    assert flat == [(1_000 + i) * 10_000 for i in range(5)]  # 10^4 token units per fen
    assert [i for c in calls for i in c.instruction_ids] == [
        i["instruction_id"] for i in batch["instructions"]]  # fmt: skip
    assert calls[0].payers == (ADDRESS["SOLAR"], ADDRESS["LEASECO"])


def test_an_account_without_a_chain_address_is_an_error() -> None:
    addresses = {k: v for k, v in ADDRESS.items() if k != "DC"}
    with pytest.raises(ExportError, match="DC has no chain address on rail cnh-stable"):
        token_calls(_batch(3), addresses)  # type: ignore[arg-type]


def test_outcomes_become_one_ack_per_instruction_with_the_chain_evidence() -> None:
    batch = _batch(2)
    (call,) = token_calls(batch, ADDRESS)  # type: ignore[arg-type]
    outcomes = [
        Outcome(1, False, 1, call.payers[1], call.payees[1], call.amounts[1]),
        Outcome(0, True, 0, call.payers[0].upper(), call.payees[0], call.amounts[0]),
    ]
    acks = acks_of_call(batch, call, outcomes, MINED, "0xSettlement")  # type: ignore[arg-type]
    assert [(a["instruction_id"], a["status"], a["reason_code"]) for a in acks] == [
        (call.instruction_ids[0], "SETTLED", None),
        (call.instruction_ids[1], "FAILED", "INSUFFICIENT_BALANCE")]  # fmt: skip
    assert all(a["transaction_hash"] == MINED.transaction_hash and a["block_number"] == 42
               for a in acks)  # fmt: skip
    assert acks[0]["acked_at"] == datetime.fromtimestamp(1_790_000_000, tz=UTC)


@pytest.mark.parametrize("change", ["missing", "twice", "amount", "payee"])
def test_outcomes_that_do_not_match_the_call_acknowledge_nothing(change: str) -> None:
    batch = _batch(2)
    (call,) = token_calls(batch, ADDRESS)  # type: ignore[arg-type]
    good = [Outcome(i, True, 0, call.payers[i], call.payees[i], call.amounts[i]) for i in (0, 1)]
    bad = {
        "missing": good[:1],
        "twice": [good[0], good[0], good[1]],
        "amount": [good[0], Outcome(1, True, 0, call.payers[1], call.payees[1], 1)],
        "payee": [good[0], Outcome(1, True, 0, call.payers[1], call.payers[1], call.amounts[1])],
    }[change]
    with pytest.raises(ExportError):
        acks_of_call(batch, call, bad, MINED, "0xSettlement")  # type: ignore[arg-type]
