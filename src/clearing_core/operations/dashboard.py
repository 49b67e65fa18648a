"""What the operators' dashboard shows, from decoded records: pure and bounded.

Why here: the aggregation (cycle reports to series per currency, rejected records
to counts by reason, positions to liquidity, log-end offset samples to rates, all of
it to a health summary) is plain data work that the tests check without a broker;
``clearing_services.operations.dashboard`` only reads Kafka and serves the result.
Amounts stay int minor units in the JSON; ``units`` says how to show them.
"""

from __future__ import annotations

import re
import shlex
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict

from clearing_core.encoding.jsonrecord import to_json
from clearing_core.encoding.records import (
    CycleReport,
    InstructionStatus,
    Position,
    Rejected,
    SettlementBatch,
)
from clearing_core.operations.finality import CycleFinality, FinalityBook
from clearing_core.operations.liquidity import LiquidityBook
from clearing_core.refdata.snapshot import ReferenceData

CYCLES_PER_CURRENCY = 50
FINALITY_CYCLES_SHOWN = 8  # per currency, the most recent
BATCHES_PER_RAIL = 20
RATE_WINDOW_SAMPLES = 6
DLQ_RECENT_MINUTES = 5  # the health strip's dead-letter rate is taken over this window
DLQ_TIMES_MAX = 100_000  # rejection times held for that rate (oldest first out)
_PLAIN_REASON = re.compile(r"^[A-Za-z0-9_.-]+$")


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
    carried_in_count: int  # deferred obligations carried in from the previous cycle
    carried_in_minor: int
    failed_carried_count: int  # failed instructions carried in from acknowledgements
    failed_carried_minor: int
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
            "carried_in_count": int(report.get("carried_in_count", 0)),
            "carried_in_minor": int(report.get("carried_in_minor", 0)),
            "failed_carried_count": int(report.get("failed_carried_count", 0)),
            "failed_carried_minor": int(report.get("failed_carried_minor", 0)),
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


def dlq_command(reason: str) -> str:
    """The command an operator runs to read the dead letters of one reason."""
    shown = reason if _PLAIN_REASON.match(reason) else shlex.quote(reason)
    return f"clearing dlq show --reason {shown}"


def units_of(refdata: ReferenceData) -> dict[str, Any]:
    """How the page shows amounts: each currency's minor exponent, and each rail's
    decimals and unit (its token symbol, else its currency) for rail units."""
    return {
        "currencies": {code: {"exponent": c.minor_exponent, "name": c.name}
                       for code, c in sorted(refdata.currencies.items())},
        "rails": {rail_id: {"currency": r.currency, "decimals": r.decimals,
                            "unit": r.token_symbol or r.currency}
                  for rail_id, r in sorted(refdata.rails.items())},
    }  # fmt: skip


def _time_ms(value: object) -> int | None:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(value) if isinstance(value, int) else None


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
    batches per rail, counts of rejects by reason (and their recent times), the latest
    cycle's positions per currency, a short window of offsets."""

    cycles_per_currency: int = CYCLES_PER_CURRENCY
    batches_per_rail: int = BATCHES_PER_RAIL
    rate_window: int = RATE_WINDOW_SAMPLES
    cycles: dict[str, dict[int, CyclePoint]] = field(default_factory=dict)
    batches: dict[str, deque[BatchRow]] = field(default_factory=dict)
    dlq: Counter[str] = field(default_factory=Counter)
    dlq_by_stage: Counter[str] = field(default_factory=Counter)
    dlq_last_ms: dict[str, int] = field(default_factory=dict)  # reason -> newest rejection
    dlq_times: deque[tuple[int, str]] = field(default_factory=lambda: deque(maxlen=DLQ_TIMES_MAX))
    offsets: deque[OffsetsSample] = field(default_factory=deque)
    rails: set[str] = field(default_factory=set)
    finality: FinalityBook = field(default_factory=FinalityBook)
    liquidity: LiquidityBook = field(default_factory=LiquidityBook)
    ack_timeouts: dict[str, int] = field(default_factory=dict)  # rail -> seconds
    units: dict[str, Any] = field(default_factory=dict)  # units_of(refdata), once read
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

    def add_position(self, position: Position) -> None:
        self.liquidity.add_position(position)

    def add_rejected(self, rejected: Rejected) -> None:
        reason = str(rejected["reason_code"])
        self.dlq[reason] += 1
        self.dlq_by_stage[str(rejected.get("stage") or "")] += 1
        at = _time_ms(rejected.get("rejected_at"))
        if at is not None:
            self.dlq_last_ms[reason] = max(at, self.dlq_last_ms.get(reason, at))
            self.dlq_times.append((at, reason))

    def add_offsets(self, sample: OffsetsSample) -> None:
        self.offsets.append(sample)
        while len(self.offsets) > max(2, self.rate_window):
            self.offsets.popleft()

    def snapshot(self, now_ms: int) -> dict[str, Any]:
        """Everything the page draws, as plain JSON; ``now_ms`` judges what is overdue
        and what is recent."""
        last = self.offsets[-1] if self.offsets else None
        rails = sorted(self.rails | set(self.batches))
        finality = self.finality.cycles(now_ms, self.ack_timeouts)
        return {
            "units": self.units,
            "cycles": {
                currency: [cycles[seq] for seq in sorted(cycles)]
                for currency, cycles in sorted(self.cycles.items())
            },
            "batches": {rail: list(reversed(self.batches.get(rail, ()))) for rail in rails},
            "dlq": dict(sorted(self.dlq.items())),
            "dlq_by_stage": dict(sorted(self.dlq_by_stage.items())),
            "dlq_total": sum(self.dlq.values()),
            "dlq_reasons": self._dlq_reasons(now_ms),
            "liquidity": self.liquidity.summary(),
            "finality": _recent_finality(finality),
            "finality_totals": finality_totals(finality),
            "chain": list(self.chain),
            "throughput": {
                topic: {"rate": rate, "log_end": last.ends[topic] if last else None}
                for topic, rate in rates(list(self.offsets)).items()
            },
        }

    def _dlq_reasons(self, now_ms: int) -> list[dict[str, Any]]:
        """Per reason, most records first: the count, those of the last few minutes, the
        newest rejection, and the command that shows them."""
        cutoff = now_ms - DLQ_RECENT_MINUTES * 60_000
        while self.dlq_times and self.dlq_times[0][0] < cutoff:
            self.dlq_times.popleft()
        recent = Counter(reason for at, reason in self.dlq_times if at >= cutoff)
        return [
            {"reason": reason, "count": count, "recent": recent.get(reason, 0),
             "last_ms": self.dlq_last_ms.get(reason), "command": dlq_command(reason)}
            for reason, count in sorted(self.dlq.items(), key=lambda kv: (-kv[1], kv[0]))
        ]  # fmt: skip


def _recent_finality(cycles: list[CycleFinality]) -> list[CycleFinality]:
    """The most recent cycles per currency with their finality, newest first."""
    shown: list[CycleFinality] = []
    for currency in sorted({c["currency"] for c in cycles}):
        shown += [c for c in cycles if c["currency"] == currency][-FINALITY_CYCLES_SHOWN:]
    return sorted(shown, key=lambda c: (c["closed_at_ms"] or 0, c["cycle_id"]), reverse=True)


def finality_totals(cycles: list[CycleFinality]) -> dict[str, int]:
    """Over every kept cycle: instructions pending and overdue, cycles not yet final."""
    rails = [r for c in cycles for r in c["rails"]]
    return {
        "pending": sum(r["pending"] for r in rails),
        "overdue": sum(r["overdue"] for r in rails),
        "failed": sum(r["failed"] for r in rails),
        "cycles_not_final": sum(1 for c in cycles if not c["final"]),
    }


STALLED = frozenset({"STALL", "STOP"})


def health(snapshot: Mapping[str, Any], errors: Mapping[str, str]) -> dict[str, Any]:
    """The strip at the top of the page: each signal with its own status, and the worst.

    ERR: a group ERR or stalled, an instruction past its rail's ack timeout, or the
    dashboard itself failing to read; WARN: a group WARN, dead letters in the last
    minutes, a participant at its cap, instructions pending; OK otherwise."""
    groups = list((snapshot.get("lag") or {}).get("groups", []))
    statuses = {str(g["group"]): str(g["status"]) for g in groups}
    stalled = sorted(str(g["group"]) for g in groups
                     if any(p["status"] in STALLED for p in g["partitions"]))  # fmt: skip
    worst = "ERR" if "ERR" in statuses.values() else "WARN" if "WARN" in statuses.values() else "OK"
    totals = snapshot["finality_totals"]
    recent = sum(int(r["recent"]) for r in snapshot["dlq_reasons"])
    liquidity = snapshot["liquidity"]
    signals = {
        "lag": worst if statuses else "WARN",
        "stalled": "ERR" if stalled else "OK",
        "dlq": "WARN" if recent else "OK",
        "finality": "ERR" if totals["overdue"] else "WARN" if totals["pending"] else "OK",
        "liquidity": "WARN" if liquidity["at_cap"] else "OK",
        "dashboard": "ERR" if errors else "OK",
    }
    ranked = [s for s in ("ERR", "WARN") if s in signals.values()]
    return {
        "status": ranked[0] if ranked else "OK",
        "signals": signals,
        "groups": dict(sorted(statuses.items())),
        "stalled": stalled,
        "dlq_total": snapshot["dlq_total"],
        "dlq_recent": recent,
        "dlq_recent_minutes": DLQ_RECENT_MINUTES,
        **totals,
        "at_cap": liquidity["at_cap"],
        "deferring": liquidity["deferring"],
    }
