"""Does the chain agree with the ledger? Every account's token balance must move by
exactly what its settled instructions say (plus what was minted to it), to the token
unit: the check the demo runs after its cycles, and the acceptance of the token rails.

Why it matters: the settlement agent reads outcomes from the chain's events; this
check reads balances, a second, independent view of the same transfers, so a
mismatch between what the contract emitted and what it moved cannot go unseen.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from clearing_core.encoding.records import SettlementBatch


def settled_moves(batches: Iterable[SettlementBatch], states: Mapping[str, str]) -> Counter[str]:
    """Token units each account paid (negative) or received, over the SETTLED
    instructions of ``batches`` (``states``: instruction id -> state)."""
    moves: Counter[str] = Counter()
    for batch in batches:
        for instruction in batch["instructions"]:
            if states.get(instruction["instruction_id"]) == "SETTLED":
                units = int(instruction["amount_rail_units"])
                moves[instruction["payer_id"]] -= units
                moves[instruction["payee_id"]] += units
    return moves


def mismatches(
    before: Mapping[str, int],
    after: Mapping[str, int],
    moves: Mapping[str, int],
    minted: Mapping[str, int],
) -> list[str]:
    """One line per account whose balance did not move by its settled instructions and
    its minting; an account the moves name but the balances do not is one too."""
    out = []
    for account in sorted(set(before) | set(after) | set(moves) | set(minted)):
        if account not in before or account not in after:
            out.append(f"{account}: no balance read on chain")
            continue
        expected = moves.get(account, 0) + minted.get(account, 0)
        moved = after[account] - before[account]
        if moved != expected:
            out.append(f"{account}: moved {moved:+,} token units, the ledger says {expected:+,}")
    return out
