"""Settlement acknowledgements: a failed instruction becomes an obligation again.

Why through the obligations log: the failed amount must settle in the next
cycle of its currency, and a replay of the log must see it; the obligation id
derives from the instruction id, so an acknowledgement sent twice (or
re-processed after a crash) is counted once by the netting stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from clearing_core import ids

FAILED_SETTLEMENT_PRIORITY = 100  # settles before anything else when liquidity is short


@dataclass(frozen=True)
class AckProblem:
    """Why an acknowledgement cannot be applied."""

    reason_code: str
    message: str


def failed_obligation(
    ack: Mapping[str, Any], batch: Mapping[str, Any] | None
) -> dict[str, Any] | AckProblem | None:
    """The obligation a FAILED acknowledgement carries into the next cycle; None for
    SETTLED; an ``AckProblem`` when the acknowledgement does not match its batch."""
    if batch is None:
        return AckProblem("UNKNOWN_BATCH", f"batch {ack['batch_id']} is not known")
    if ack["rail_id"] != batch["rail_id"]:
        return AckProblem(
            "RAIL_MISMATCH", f"{ack['instruction_id']}: rail {ack['rail_id']} is not "
            f"the batch's rail {batch['rail_id']}",
        )  # fmt: skip
    instruction = next(
        (i for i in batch["instructions"] if i["instruction_id"] == ack["instruction_id"]), None
    )
    if instruction is None:
        return AckProblem(
            "UNKNOWN_INSTRUCTION", f"{ack['instruction_id']} is not in batch {batch['batch_id']}"
        )
    if ack["status"] == "SETTLED":
        return None
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
