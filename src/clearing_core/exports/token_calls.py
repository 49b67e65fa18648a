"""A token rail's batch as settlement-contract calls, and the chain's outcomes as
acknowledgements.

Why pure: which instruction is in which call, under which key, and what each
event on the chain means for an instruction must be the same before and after
a crash; the agent (``clearing_services/settlement/token_agent.py``) only moves
these values to and from the chain and Kafka.

A batch goes to the contract in calls of at most ``CALL_INSTRUCTIONS_MAX``
instructions (the contract's bound). Each call's key is
``sha256(batch id + "#" + part)``: fixed by the batch alone, so the contract,
which refuses a key it has recorded, refuses a second payment of the same part
whoever sends it and whenever.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from clearing_core.encoding.records import SettlementAck, SettlementBatch
from clearing_core.exports.documents import ExportError, token_batch

CALL_INSTRUCTIONS_MAX = 256  # MAX_INSTRUCTIONS of contracts/Settlement.vy
# The contract's reason codes (REASON_* in contracts/Settlement.vy) -> the ack's code and text.
FAILURE_REASONS = {
    1: ("INSUFFICIENT_BALANCE", "the payer's token balance is below the amount"),
    2: ("INSUFFICIENT_ALLOWANCE", "the payer's allowance to the settlement contract is short"),
}


@dataclass(frozen=True)
class TokenCall:
    """One ``settle`` call: part ``part`` of batch ``batch_id``."""

    batch_id: str
    part: int
    key: bytes  # the contract's batch key (32 bytes)
    instruction_ids: tuple[str, ...]
    payers: tuple[str, ...]  # addresses, in instruction order
    payees: tuple[str, ...]
    amounts: tuple[int, ...]  # token units


@dataclass(frozen=True)
class Outcome:
    """One instruction's event on the chain: paid, or failed with the contract's reason."""

    index: int  # within its call, from 0
    paid: bool
    reason: int  # 0 when paid
    payer: str
    payee: str
    amount: int


@dataclass(frozen=True)
class Inclusion:
    """Where a call was executed: the acknowledgements' evidence."""

    transaction_hash: str
    block_number: int
    block_time_ms: int


def call_key(batch_id: str, part: int) -> bytes:
    return hashlib.sha256(f"{batch_id}#{part}".encode()).digest()


def token_calls(
    batch: SettlementBatch, addresses: Mapping[str, str], calls_max: int = CALL_INSTRUCTIONS_MAX
) -> list[TokenCall]:
    """The calls that settle ``batch``; ``addresses`` maps each account id of the batch
    (participants and the clearing house account) to its chain address."""
    assert 1 <= calls_max <= CALL_INSTRUCTIONS_MAX
    transfers = token_batch(batch)["transfers"]  # checks the format, values and control sum
    for transfer in transfers:
        for account in (transfer["from"], transfer["to"]):
            if account not in addresses:
                raise ExportError(
                    f"batch {batch['batch_id']}: {account} has no chain address on rail "
                    f"{batch['rail_id']} (reference data: chain_address)"
                )
    calls = []
    for part, start in enumerate(range(0, len(transfers), calls_max)):
        chunk = transfers[start : start + calls_max]
        calls.append(TokenCall(
            batch_id=batch["batch_id"], part=part, key=call_key(batch["batch_id"], part),
            instruction_ids=tuple(t["instruction_id"] for t in chunk),
            payers=tuple(addresses[t["from"]] for t in chunk),
            payees=tuple(addresses[t["to"]] for t in chunk),
            amounts=tuple(int(t["value"]) for t in chunk),
        ))  # fmt: skip
    return calls


def acks_of_call(
    batch: SettlementBatch,
    call: TokenCall,
    outcomes: Sequence[Outcome],
    inclusion: Inclusion,
    bank_id: str,
) -> list[SettlementAck]:
    """One acknowledgement per instruction of ``call``; the outcomes must be exactly
    one per instruction, naming its payer, payee and amount (else the chain did not
    execute this call, and nothing is acknowledged)."""
    by_index = {o.index: o for o in outcomes}
    if len(by_index) != len(outcomes) or sorted(by_index) != list(range(len(call.amounts))):
        raise ExportError(
            f"{call.batch_id} part {call.part}: {len(outcomes)} outcomes on chain for "
            f"{len(call.amounts)} instructions"
        )
    acked_at = datetime.fromtimestamp(inclusion.block_time_ms / 1000, tz=UTC)
    acks: list[SettlementAck] = []
    for index, instruction_id in enumerate(call.instruction_ids):
        outcome = by_index[index]
        expected = (call.payers[index].lower(), call.payees[index].lower(), call.amounts[index])
        if (outcome.payer.lower(), outcome.payee.lower(), outcome.amount) != expected:
            raise ExportError(f"{instruction_id}: the chain's event does not match the instruction")
        code, text = (None, None) if outcome.paid else FAILURE_REASONS.get(
            outcome.reason, (f"REASON_{outcome.reason}", "the contract's reason code")
        )  # fmt: skip
        acks.append({
            "batch_id": batch["batch_id"], "instruction_id": instruction_id,
            "rail_id": batch["rail_id"], "status": "SETTLED" if outcome.paid else "FAILED",
            "reason_code": code, "reason": text, "bank_id": bank_id,
            "bank_reference": inclusion.transaction_hash, "acked_at": acked_at,
            "transaction_hash": inclusion.transaction_hash,
            "block_number": inclusion.block_number,
        })  # fmt: skip
    return acks
