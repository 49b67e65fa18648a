"""What a simulated settlement bank answers: for each instruction of a batch, settled
or rejected with a realistic ISO 20022 reason, decided by a seeded hash.

Why a hash of (seed, instruction id) and not a random generator: the bank may be
killed after answering and before committing its offset; the batch it reads again
must get the same answer, so the repeat is a no-op rather than a contradiction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from clearing_core.encoding.records import SettlementBatch
from clearing_core.exports.documents import ExportError
from clearing_core.exports.pacs002 import TxOutcome, TxStatus

HASH_SPACE = 2**64


@dataclass(frozen=True, slots=True)
class RejectReason:
    code: str  # ExternalStatusReason1Code
    weight: int
    narrative: str | None = None


# What an RTGS or correspondent bank rejects interbank transfers for, most often first.
REJECT_REASONS: Sequence[RejectReason] = (
    RejectReason("AM04", 40),  # insufficient funds
    RejectReason("AC01", 15),  # incorrect account number
    RejectReason("AB03", 15),  # settlement aborted: timeout
    RejectReason("AB04", 10),  # settlement aborted: fatal error
    RejectReason("ED05", 10),  # settlement failed
    RejectReason("NARR", 10, "beneficiary institution closed for settlement today"),
)


def _uniform(seed: int, instruction_id: str, purpose: str) -> float:
    digest = hashlib.sha256(f"{seed}:{purpose}:{instruction_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / HASH_SPACE


def outcomes(batch: SettlementBatch, reject_ratio: float, seed: int) -> list[TxOutcome]:
    """One answer per instruction: about ``reject_ratio`` of them rejected."""
    if not 0.0 <= reject_ratio <= 1.0:
        raise ExportError(f"reject ratio {reject_ratio} is not between 0 and 1")
    total = sum(r.weight for r in REJECT_REASONS)
    answers = []
    for instruction in batch["instructions"]:
        instruction_id = str(instruction["instruction_id"])
        if _uniform(seed, instruction_id, "reject") >= reject_ratio:
            answers.append(TxOutcome(instruction_id, TxStatus.ACSC))
            continue
        point = _uniform(seed, instruction_id, "reason") * total
        for reason in REJECT_REASONS:
            point -= reason.weight
            if point < 0:
                break
        answers.append(TxOutcome(instruction_id, TxStatus.RJCT, reason.code, reason.narrative))
    return answers
