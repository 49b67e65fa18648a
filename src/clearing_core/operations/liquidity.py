"""How close each participant is to its net debit cap, from the latest cycle's positions.

Why a fold of ``clearing.positions``: each cycle close writes one Position per
participant of the cycle, with the cap in force at that close, so the newest cycle's
positions of a currency are its participants' liquidity now. Ordering is exact
(fractions of integers), so the most constrained participant comes first however large
the amounts are; money stays in int minor units.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TypedDict

from clearing_core.encoding.records import Position

LIQUIDITY_ROWS_MAX = 100  # rows the snapshot carries; the page shows fewer until asked
BASIS_POINTS = 10_000


class LiquidityRow(TypedDict):
    """One participant in one currency after that currency's latest cycle."""

    participant_id: str
    currency: str
    cycle_seq: int
    net_minor: int  # positive receives, negative pays
    net_debit_minor: int  # what it pays net: max(0, -net)
    cap_minor: int | None  # None: no cap
    headroom_minor: int | None  # cap - net debit (negative: over the cap)
    used_bp: int | None  # net debit / cap in basis points, rounded down
    deferred_minor: int  # its obligations deferred to the next cycle by the cap


class LiquiditySummary(TypedDict):
    rows: list[LiquidityRow]
    participants: int  # rows in all, before the cap on rows shown
    capped: int  # of which with a cap
    at_cap: int  # net debit at or over the cap
    deferring: int  # with obligations deferred


def liquidity_row(position: Position) -> LiquidityRow:
    """A participant's net debit against its cap in force at the close."""
    net = int(position["net_minor"])
    debit = max(0, -net)
    raw_cap = position.get("net_debit_cap_minor")
    cap = None if raw_cap is None else int(raw_cap)
    used = None
    if cap is not None:
        used = debit * BASIS_POINTS // cap if cap > 0 else (BASIS_POINTS if debit else 0)
    return {
        "participant_id": position["participant_id"], "currency": position["currency"],
        "cycle_seq": int(position["cycle_seq"]), "net_minor": net, "net_debit_minor": debit,
        "cap_minor": cap, "headroom_minor": None if cap is None else cap - debit,
        "used_bp": used, "deferred_minor": int(position.get("deferred_minor") or 0),
    }  # fmt: skip


def constraint_key(row: LiquidityRow) -> tuple[int, Fraction, int, int, str, str]:
    """Sort key, most constrained first: capped before uncapped, then the share of the
    cap used (exact), the value deferred, the net debit, and the ids for a stable order."""
    cap = row["cap_minor"]
    if cap is None:
        used = Fraction(0)
    elif cap == 0:
        used = Fraction(1 if row["net_debit_minor"] else 0)
    else:
        used = Fraction(row["net_debit_minor"], cap)
    return (0 if cap is not None else 1, -used, -row["deferred_minor"],
            -row["net_debit_minor"], row["currency"], row["participant_id"])  # fmt: skip


def most_constrained(
    rows: Iterable[LiquidityRow], limit: int = LIQUIDITY_ROWS_MAX
) -> LiquiditySummary:
    """The rows sorted most constrained first, at most ``limit`` of them, with counts."""
    ordered = sorted(rows, key=constraint_key)
    capped = [r for r in ordered if r["cap_minor"] is not None]
    return {
        "rows": ordered[:limit],
        "participants": len(ordered),
        "capped": len(capped),
        "at_cap": sum(1 for r in capped if r["net_debit_minor"] >= (r["cap_minor"] or 0)
                      and r["net_debit_minor"] > 0),
        "deferring": sum(1 for r in ordered if r["deferred_minor"] > 0),
    }  # fmt: skip


@dataclass
class LiquidityBook:
    """Per currency, the positions of its newest cycle seen (older ones are dropped:
    they describe a cycle that has been superseded)."""

    cycle: dict[str, int] = field(default_factory=dict)
    positions: dict[str, dict[str, Position]] = field(default_factory=dict)

    def add_position(self, position: Position) -> None:
        currency, seq = position["currency"], int(position["cycle_seq"])
        kept = self.cycle.get(currency)
        if kept is not None and seq < kept:
            return  # a position of an older cycle, read late from another partition
        if kept is None or seq > kept:
            self.cycle[currency] = seq
            self.positions[currency] = {}
        self.positions[currency][position["participant_id"]] = position

    def summary(self, limit: int = LIQUIDITY_ROWS_MAX) -> LiquiditySummary:
        rows = [liquidity_row(p) for kept in self.positions.values() for p in kept.values()]
        return most_constrained(rows, limit)
