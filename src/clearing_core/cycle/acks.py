"""Settlement acknowledgements: a state machine per instruction, and a failed
instruction's amount carried into the next cycle.

Why a state machine: SETTLED and FAILED are final. A repeated identical
acknowledgement changes nothing; one that contradicts a final state (FAILED after
SETTLED, or the reverse) is refused and audited, never applied: applying a FAILED
after a SETTLED would carry the amount into the next cycle and the payer would pay
twice.

Why the carry goes through the obligations log: the failed amount must settle in
the next cycle of its currency, and a replay of the log must see it; the obligation
id derives from the instruction id, so the netting stage counts it once even if an
acknowledgement is processed again after a crash.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TypedDict

from clearing_core import ids
from clearing_core.encoding.records import InstructionStatus, Obligation, SettlementAck

FAILED_SETTLEMENT_PRIORITY = 100  # settles before anything else when liquidity is short
FINAL_STATES = frozenset({"SETTLED", "FAILED"})
HOUSE = "CLEARING_HOUSE"  # the clearing house's rail accounts: no statement of their own


class Transition(StrEnum):
    """What an acknowledgement does to its instruction's state."""

    APPLY = "APPLY"  # a new state: record it (and carry a failure)
    REPEAT = "REPEAT"  # the state the instruction is already in: nothing to do
    STALE = "STALE"  # PENDING after a final state (a late interim report): nothing to do
    CONTRADICTS = "CONTRADICTS"  # another final state after a final one: refused


def transition(current: str | None, status: str) -> Transition:
    """The state machine PENDING -> SETTLED | FAILED, with both final."""
    if status == current:
        return Transition.REPEAT
    if current not in FINAL_STATES:
        return Transition.APPLY
    return Transition.STALE if status == "PENDING" else Transition.CONTRADICTS


class AckInstruction(TypedDict):
    """What an acknowledgement needs of a ``SettlementInstruction``."""

    instruction_id: str
    payer_id: str
    payee_id: str
    amount_minor: int


class AckBatch(TypedDict):
    """What an acknowledgement needs of a ``SettlementBatch`` (the acks worker keeps
    only this of each batch: ``batch_index.ack_view``)."""

    batch_id: str
    rail_id: str
    currency: str
    instructions: list[AckInstruction]


@dataclass(frozen=True)
class AckProblem:
    """Why an acknowledgement cannot be applied (its dead-letter reason)."""

    reason_code: str
    message: str


@dataclass(frozen=True)
class AckOutcome:
    """What to write for one acknowledgement: its new ``InstructionStatus`` record and,
    for a failure, the obligation that carries the amount; nothing for a repeat."""

    status: InstructionStatus | None
    obligation: Obligation | None
    parties: tuple[str, ...] = ()  # whose statements show the instruction (not the house's)


def apply_ack(
    ack: SettlementAck, batch: AckBatch | None, current: str | None
) -> AckOutcome | AckProblem:
    """Check an acknowledgement against its batch and its instruction's ``current``
    state (None: no acknowledgement yet) and say what it changes."""
    instruction = _instruction(ack, batch)
    if isinstance(instruction, AckProblem):
        return instruction
    assert batch is not None
    step = transition(current, ack["status"])
    if step in (Transition.REPEAT, Transition.STALE):
        return AckOutcome(None, None)
    if step is Transition.CONTRADICTS:
        return AckProblem(
            "ACK_CONTRADICTS_FINAL", f"{ack['instruction_id']} is {current} (final): a "
            f"{ack['status']} acknowledgement is refused",
        )  # fmt: skip
    status: InstructionStatus = {
        "instruction_id": ack["instruction_id"], "batch_id": batch["batch_id"],
        "rail_id": batch["rail_id"], "currency": batch["currency"], "status": ack["status"],
        "reason_code": ack.get("reason_code"), "bank_id": ack["bank_id"],
        "bank_reference": ack.get("bank_reference"), "acked_at": ack["acked_at"],
    }  # fmt: skip
    carry = failed_obligation(ack, batch, instruction) if ack["status"] == "FAILED" else None
    parties = tuple(p for p in (instruction["payer_id"], instruction["payee_id"]) if p != HOUSE)
    return AckOutcome(status, carry, parties)


def _instruction(ack: SettlementAck, batch: AckBatch | None) -> AckInstruction | AckProblem:
    if batch is None:
        return AckProblem("UNKNOWN_BATCH", f"batch {ack['batch_id']} is not known")
    if ack["rail_id"] != batch["rail_id"]:
        return AckProblem(
            "RAIL_MISMATCH", f"{ack['instruction_id']}: rail {ack['rail_id']} is not "
            f"the batch's rail {batch['rail_id']}",
        )  # fmt: skip
    instruction: AckInstruction | None = next(
        (i for i in batch["instructions"] if i["instruction_id"] == ack["instruction_id"]), None
    )
    if instruction is None:
        return AckProblem(
            "UNKNOWN_INSTRUCTION", f"{ack['instruction_id']} is not in batch {batch['batch_id']}"
        )
    return instruction


def failed_obligation(
    ack: SettlementAck, batch: AckBatch, instruction: AckInstruction
) -> Obligation:
    """The obligation a FAILED instruction carries into the next cycle."""
    acked_at = ack["acked_at"]
    assert isinstance(acked_at, datetime)
    return {
        "obligation_id": ids.obligation_id("FAILED_SETTLEMENT", [instruction["instruction_id"]]),
        "debtor_id": instruction["payer_id"], "creditor_id": instruction["payee_id"],
        "currency": batch["currency"], "amount_minor": instruction["amount_minor"],
        "priority": FAILED_SETTLEMENT_PRIORITY, "source": "FAILED_SETTLEMENT",
        "contract_id": batch["batch_id"], "source_event_count": 1, "source_digest": None,
        "event_time": acked_at, "remainder_ppm": 0, "carry_key": None,
    }  # fmt: skip
