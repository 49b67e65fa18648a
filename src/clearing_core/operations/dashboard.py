"""What the operators' dashboard shows, from decoded records: pure and bounded.

Why here: the aggregation (cycle reports to series per currency, rejected records
to counts by reason, log-end offset samples to rates) is plain data work that the
tests check without a broker; ``clearing_services.operations.dashboard`` only reads Kafka
and serves the result.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from clearing_core.encoding.jsonrecord import to_json
from clearing_core.encoding.records import (
    CycleReport,
    InstructionStatus,
    Rejected,
    SettlementBatch,
)
from clearing_core.operations.finality import CycleFinality, FinalityBook

CYCLES_PER_CURRENCY = 50
FINALITY_CYCLES_SHOWN = 8  # per currency, the most recent
BATCHES_PER_RAIL = 20
RATE_WINDOW_SAMPLES = 6


class CyclePoint(TypedDict):
    """The figures of one cycle report that the dashboard shows (JSON: times as text)."""

    cycle_id: str
    currency: str
    cycle_seq: int
    closed_at: str | None
    obligation_count: int
    gross_minor: int
    net_minor: int
    netting_efficiency: float
    instruction_count: int
    deferred_count: int
    deferred_minor: int
    rejected_count: int
    batch_ids: list[str]


class BatchRow(TypedDict):
    """The figures of one settlement batch that the dashboard shows (JSON)."""

    batch_id: str
    rail_id: str
    currency: str
    cycle_id: str
    created_at: str | None
    instruction_count: int
    control_sum_minor: int
    control_sum_rail_units: int


def cycle_point(report: CycleReport) -> CyclePoint:
    """The figures of one cycle report that the dashboard shows."""
    point: CyclePoint = to_json(
        {
            "cycle_id": report["cycle_id"],
            "currency": report["currency"],
            "cycle_seq": int(report["cycle_seq"]),
            "closed_at": report.get("closed_at"),
            "obligation_count": int(report.get("obligation_count", 0)),
            "gross_minor": int(report["gross_minor"]),
            "net_minor": int(report["net_minor"]),
            "netting_efficiency": float(report["netting_efficiency"]),
            "instruction_count": int(report.get("instruction_count", 0)),
            "deferred_count": int(report.get("deferred_count", 0)),
            "deferred_minor": int(report.get("deferred_minor", 0)),
            "rejected_count": int(report.get("rejected_count", 0)),
            "batch_ids": list(report.get("batch_ids") or []),
        }
    )
    return point


def cycle_series(
    reports: Iterable[CycleReport], limit: int = CYCLES_PER_CURRENCY
) -> dict[str, list[CyclePoint]]:
    """Per currency, its last ``limit`` cycles in cycle order (a report seen twice,
    as after a replayed transaction, counts once: the later one wins)."""
    by_currency: dict[str, dict[int, CyclePoint]] = {}
    for report in reports:
        point = cycle_point(report)
        by_currency.setdefault(point["currency"], {})[point["cycle_seq"]] = point
    return {
        currency: [cycles[seq] for seq in sorted(cycles)][-limit:]
        for currency, cycles in sorted(by_currency.items())
    }


def batch_row(batch: SettlementBatch) -> BatchRow:
    """The figures of one settlement batch that the dashboard shows."""
    row: BatchRow = to_json(
        {
            "batch_id": batch["batch_id"],
            "rail_id": batch["rail_id"],
            "currency": batch["currency"],
            "cycle_id": batch["cycle_id"],
            "created_at": batch.get("created_at"),
            "instruction_count": int(batch["instruction_count"]),
            "control_sum_minor": int(batch["control_sum_minor"]),
            "control_sum_rail_units": int(batch["control_sum_rail_units"]),
        }
    )
    return row


def dlq_counts(records: Iterable[Rejected]) -> dict[str, int]:
    """Rejected records counted by reason code, sorted by reason."""
    counts = Counter(str(r["reason_code"]) for r in records)
    return dict(sorted(counts.items()))


@dataclass(frozen=True)
class OffsetsSample:
    """Log-end offsets of some topics (summed over partitions) at one time."""

    time_ms: int
    ends: Mapping[str, int]


def rates(samples: Sequence[OffsetsSample]) -> dict[str, float | None]:
    """Records per second per topic between the oldest and the newest sample (None
    with fewer than two samples or no time between them; a topic recreated, its log
    end going back, reads 0)."""
    if not samples:
        return {}
    first, last = samples[0], samples[-1]
    seconds = (last.time_ms - first.time_ms) / 1000.0
    out: dict[str, float | None] = {}
    for topic in sorted(last.ends):
        if seconds <= 0 or topic not in first.ends:
            out[topic] = None
        else:
            out[topic] = max(0, last.ends[topic] - first.ends[topic]) / seconds
    return out


@dataclass
class DashboardState:
    """What the dashboard knows, bounded: the last cycles per currency, the last
    batches per rail, counts of rejects by reason, a short window of offsets."""

    cycles_per_currency: int = CYCLES_PER_CURRENCY
    batches_per_rail: int = BATCHES_PER_RAIL
    rate_window: int = RATE_WINDOW_SAMPLES
    cycles: dict[str, dict[int, CyclePoint]] = field(default_factory=dict)
    batches: dict[str, deque[BatchRow]] = field(default_factory=dict)
    dlq: Counter[str] = field(default_factory=Counter)
    dlq_by_stage: Counter[str] = field(default_factory=Counter)
    offsets: deque[OffsetsSample] = field(default_factory=deque)
    rails: set[str] = field(default_factory=set)
    finality: FinalityBook = field(default_factory=FinalityBook)
    ack_timeouts: dict[str, int] = field(default_factory=dict)  # rail -> seconds
    chain: list[dict[str, Any]] = field(default_factory=list)  # the house's balances on chain

    def add_cycle(self, report: CycleReport) -> None:
        self.finality.add_cycle(report)
        point = cycle_point(report)
        cycles = self.cycles.setdefault(point["currency"], {})
        cycles[point["cycle_seq"]] = point
        while len(cycles) > self.cycles_per_currency:
            del cycles[min(cycles)]

    def add_batch(self, batch: SettlementBatch) -> None:
        self.finality.add_batch(batch)
        row = batch_row(batch)
        kept = self.batches.setdefault(row["rail_id"], deque(maxlen=self.batches_per_rail))
        for i, old in enumerate(kept):
            if old["batch_id"] == row["batch_id"]:
                kept[i] = row
                return
        kept.append(row)

    def add_status(self, status: InstructionStatus) -> None:
        self.finality.add_status(status)

    def add_rejected(self, rejected: Rejected) -> None:
        self.dlq[str(rejected["reason_code"])] += 1
        self.dlq_by_stage[str(rejected.get("stage") or "")] += 1

    def add_offsets(self, sample: OffsetsSample) -> None:
        self.offsets.append(sample)
        while len(self.offsets) > max(2, self.rate_window):
            self.offsets.popleft()

    def snapshot(self, now_ms: int) -> dict[str, Any]:
        """Everything the page draws, as plain JSON; ``now_ms`` judges what is overdue."""
        last = self.offsets[-1] if self.offsets else None
        rails = sorted(self.rails | set(self.batches))
        return {
            "cycles": {
                currency: [cycles[seq] for seq in sorted(cycles)]
                for currency, cycles in sorted(self.cycles.items())
            },
            "batches": {rail: list(reversed(self.batches.get(rail, ()))) for rail in rails},
            "dlq": dict(sorted(self.dlq.items())),
            "dlq_by_stage": dict(sorted(self.dlq_by_stage.items())),
            "dlq_total": sum(self.dlq.values()),
            "finality": self._finality(now_ms),
            "chain": list(self.chain),
            "throughput": {
                topic: {"rate": rate, "log_end": last.ends[topic] if last else None}
                for topic, rate in rates(list(self.offsets)).items()
            },
        }

    def _finality(self, now_ms: int) -> list[CycleFinality]:
        """The most recent cycles per currency with their finality, newest first."""
        cycles = self.finality.cycles(now_ms, self.ack_timeouts)
        shown: list[CycleFinality] = []
        for currency in sorted({c["currency"] for c in cycles}):
            shown += [c for c in cycles if c["currency"] == currency][-FINALITY_CYCLES_SHOWN:]
        return sorted(shown, key=lambda c: (c["closed_at_ms"] or 0, c["cycle_id"]), reverse=True)
