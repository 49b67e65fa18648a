"""Where each cycle stands on the way to finality, per rail: instructions settled,
failed (their value carried into the next cycle) and still pending, and which of
the pending are past their rail's ``ack_timeout_seconds``.

Why one fold for the command line and the dashboard: ``clearing cycles`` reads the
topics once and the dashboard tails them, and both must say the same thing. The
fold is bounded: the last cycles per currency, their batches, and the latest
state of each instruction (the compacted ``clearing.settlement.status``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypedDict

from clearing_core.encoding.records import CycleReport, InstructionStatus, SettlementBatch

CYCLES_PER_CURRENCY = 50
STATES_MAX = 1_000_000  # instruction states held (oldest first out)


class RailFinality(TypedDict):
    """One rail's batch of one cycle."""

    rail_id: str
    batch_id: str
    instructions: int
    settled: int
    failed: int
    pending: int
    overdue: int  # pending longer than the rail's ack_timeout_seconds
    settled_minor: int
    carried_minor: int  # the value of the failed instructions, carried to the next cycle


class CycleFinality(TypedDict):
    cycle_id: str
    currency: str
    cycle_seq: int
    closed_at_ms: int | None
    final: bool  # every instruction of every batch SETTLED or FAILED
    rails: list[RailFinality]


@dataclass(frozen=True)
class _Batch:
    rail_id: str
    created_ms: int
    amounts: dict[str, int]  # instruction id -> amount_minor


def _ms(value: object) -> int | None:
    return int(value.timestamp() * 1000) if isinstance(value, datetime) else None


@dataclass
class FinalityBook:
    """Cycle reports, batches and instruction states folded into finality."""

    cycles_per_currency: int = CYCLES_PER_CURRENCY
    states_max: int = STATES_MAX
    reports: dict[str, dict[int, CycleReport]] = field(default_factory=dict)
    batches: dict[str, _Batch] = field(default_factory=dict)
    states: OrderedDict[str, str] = field(default_factory=OrderedDict)

    def add_cycle(self, report: CycleReport) -> None:
        kept = self.reports.setdefault(report["currency"], {})
        kept[int(report["cycle_seq"])] = report
        while len(kept) > self.cycles_per_currency:
            dropped = kept.pop(min(kept))
            for batch_id in dropped["batch_ids"]:
                self.batches.pop(batch_id, None)

    def add_batch(self, batch: SettlementBatch) -> None:
        self.batches[batch["batch_id"]] = _Batch(
            batch["rail_id"], _ms(batch["created_at"]) or 0,
            {i["instruction_id"]: int(i["amount_minor"]) for i in batch["instructions"]},
        )  # fmt: skip

    def add_status(self, status: InstructionStatus) -> None:
        self.states[status["instruction_id"]] = status["status"]
        self.states.move_to_end(status["instruction_id"])
        while len(self.states) > self.states_max:
            self.states.popitem(last=False)

    def cycles(
        self, now_ms: int, ack_timeouts: Mapping[str, int], currency: str | None = None
    ) -> list[CycleFinality]:
        """The kept cycles (of ``currency``, or all), oldest first per currency."""
        out = []
        for code in sorted(self.reports):
            if currency is not None and code != currency:
                continue
            for seq in sorted(self.reports[code]):
                out.append(self._cycle(self.reports[code][seq], now_ms, ack_timeouts))
        return out

    def _cycle(
        self, report: CycleReport, now_ms: int, ack_timeouts: Mapping[str, int]
    ) -> CycleFinality:
        rails = [self._rail(batch_id, now_ms, ack_timeouts) for batch_id in report["batch_ids"]]
        known = [r for r in rails if r is not None]
        return {
            "cycle_id": report["cycle_id"], "currency": report["currency"],
            "cycle_seq": int(report["cycle_seq"]), "closed_at_ms": _ms(report["closed_at"]),
            "final": len(known) == len(rails) and all(r["pending"] == 0 for r in known),
            "rails": known,
        }  # fmt: skip

    def _rail(
        self, batch_id: str, now_ms: int, ack_timeouts: Mapping[str, int]
    ) -> RailFinality | None:
        batch = self.batches.get(batch_id)
        if batch is None:
            return None
        counts = {"SETTLED": [0, 0], "FAILED": [0, 0], "PENDING": [0, 0]}
        for instruction_id, amount in batch.amounts.items():
            tally = counts[self.states.get(instruction_id, "PENDING")]
            tally[0] += 1
            tally[1] += amount
        pending = counts["PENDING"][0]
        timeout_ms = 1000 * ack_timeouts.get(batch.rail_id, 0)
        late = bool(timeout_ms) and now_ms - batch.created_ms > timeout_ms
        return {
            "rail_id": batch.rail_id, "batch_id": batch_id, "instructions": len(batch.amounts),
            "settled": counts["SETTLED"][0], "failed": counts["FAILED"][0], "pending": pending,
            "overdue": pending if late else 0, "settled_minor": counts["SETTLED"][1],
            "carried_minor": counts["FAILED"][1],
        }  # fmt: skip


TOTALS = ("settled", "failed", "pending", "overdue", "carried_minor")


def per_rail(cycles: list[CycleFinality]) -> dict[str, dict[str, int]]:
    """Totals per rail over ``cycles``: what the demo's summary shows."""
    out: dict[str, dict[str, int]] = {}
    for cycle in cycles:
        for rail in cycle["rails"]:
            total = out.setdefault(rail["rail_id"], dict.fromkeys(("batches", *TOTALS), 0))
            total["batches"] += 1
            for key in TOTALS:
                total[key] += int(rail[key])  # type: ignore[literal-required]
    return dict(sorted(out.items()))
