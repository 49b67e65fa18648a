"""One currency's clearing cycles: accumulate obligations, close deterministically.

Why a pure class: the netting worker, ``clearing replay`` and the tests drive
the same object with the same log and must get byte-identical outputs. Nothing
here reads a clock: the marker's log time stamps the outputs. Obligations are
kept columnar (one list per field, arrays at close), duplicates of ids already
counted in recent cycles are dropped, and obligations deferred by the
liquidity limits are carried, first in line, into the next cycle.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from clearing_core import ids
from clearing_core.errors import InputError, InvariantError
from clearing_core.money import checked_sum_array
from clearing_core.netting import net_currency
from clearing_core.settlement import RailSpec, batch_record, settle_by_rail

SEEN_CYCLES = 8  # ids of this many closed cycles are remembered to drop late duplicates
PPM = 1_000_000  # remainders are in millionths of a minor unit
OPEN_OBLIGATIONS_MAX = 50_000_000
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class RailInfo:
    """A rail as the cycle needs it: settlement spec plus export fields."""

    spec: RailSpec
    export_format: str
    token_symbol: str | None


@dataclass(frozen=True)
class CycleContext:
    """The reference data one currency's close needs, taken at close time."""

    currency: str
    iso_currency: str
    currency_exponent: int
    rails: Mapping[str, RailInfo]
    rail_of: Mapping[str, str]
    cap_minor: Mapping[str, int]
    identities: Mapping[str, tuple[str | None, str | None]]
    refdata_digest: str | None = None


@dataclass(frozen=True)
class Carried:
    """Obligations carried into the next cycle, columnar."""

    obligation_id: tuple[str, ...] = ()
    debtor_id: tuple[str, ...] = ()
    creditor_id: tuple[str, ...] = ()
    amount_minor: tuple[int, ...] = ()
    priority: tuple[int, ...] = ()
    source: tuple[str, ...] = ()

    def records(self) -> list[dict[str, Any]]:
        columns = zip(
            self.obligation_id, self.debtor_id, self.creditor_id, self.amount_minor,
            self.priority, self.source, strict=True,
        )  # fmt: skip
        return [
            {"obligation_id": o, "debtor_id": d, "creditor_id": c, "amount_minor": a,
             "priority": p, "source": s}
            for o, d, c, a, p, s in columns
        ]  # fmt: skip


@dataclass
class Remainder:
    """Sub-minor pricing remainders of one contract key, carried across cycles."""

    debtor_id: str
    creditor_id: str
    source: str
    priority: int
    remainder_ppm: int = 0


@dataclass
class _Open:
    """The open cycle's obligations, appended in log order."""

    obligation_id: list[str] = field(default_factory=list)
    debtor_id: list[str] = field(default_factory=list)
    creditor_id: list[str] = field(default_factory=list)
    amount_minor: list[int] = field(default_factory=list)
    priority: list[int] = field(default_factory=list)
    source: list[str] = field(default_factory=list)
    duplicates: int = 0

    def __len__(self) -> int:
        return len(self.obligation_id)


@dataclass(frozen=True)
class CycleOutcome:
    """Everything a close emits, as records ready to encode."""

    cycle_seq: int
    batches: list[dict[str, Any]]
    positions: list[dict[str, Any]]
    report: dict[str, Any]
    carried: Carried


class CurrencyLedger:
    """The open cycle of one currency and what it remembers of recent ones."""

    def __init__(self, currency: str, cycle_seq: int = 0, carried: Carried | None = None,
                 opened_at: datetime | None = None) -> None:  # fmt: skip
        self.currency = currency
        self.cycle_seq = cycle_seq
        self.carried = carried or Carried()
        self.opened_at = opened_at
        self.remainders: dict[str, Remainder] = {}
        self._open = _Open()
        self._seen_open: set[str] = set(self.carried.obligation_id)
        self._seen_closed: deque[set[str]] = deque(maxlen=SEEN_CYCLES)

    def remember(self, obligation_ids: Iterable[str]) -> None:
        """Mark ids as counted in an earlier cycle (rebuilding state after a restart)."""
        if not self._seen_closed:
            self._seen_closed.append(set())
        self._seen_closed[-1].update(obligation_ids)

    def _seen(self, obligation_id: str) -> bool:
        return obligation_id in self._seen_open or any(
            obligation_id in s for s in self._seen_closed
        )

    def add(self, record: Mapping[str, Any], log_time: datetime | None = None) -> bool:
        """Count an ``Obligation`` record once; False when its id was already counted."""
        if record["currency"] != self.currency:
            raise InputError(f"{record['obligation_id']}: currency {record['currency']} "
                             f"in the {self.currency} ledger")  # fmt: skip
        oid = record["obligation_id"]
        if self._seen(oid):
            self._open.duplicates += 1
            return False
        if len(self._open) >= OPEN_OBLIGATIONS_MAX:
            raise InputError(f"{self.currency}: more than {OPEN_OBLIGATIONS_MAX} open obligations")
        if self.opened_at is None and log_time is not None:
            self.opened_at = log_time
        self._seen_open.add(oid)
        if record.get("remainder_ppm"):
            self._add_remainder(record)
        if int(record["amount_minor"]) == 0:
            return True  # only a remainder: it settles once whole units accumulate
        o = self._open
        o.obligation_id.append(oid)
        o.debtor_id.append(record["debtor_id"])
        o.creditor_id.append(record["creditor_id"])
        o.amount_minor.append(int(record["amount_minor"]))
        o.priority.append(int(record.get("priority", 0)))
        o.source.append(str(record["source"]))
        return True

    def _add_remainder(self, record: Mapping[str, Any]) -> None:
        key = record.get("carry_key")
        if not 0 <= int(record["remainder_ppm"]) < PPM:
            raise InputError(f"{record['obligation_id']}: remainder_ppm out of 0..999999")
        if not key:
            raise InputError(f"{record['obligation_id']}: a remainder without a carry_key")
        entry = self.remainders.setdefault(
            key, Remainder(record["debtor_id"], record["creditor_id"], str(record["source"]),
                           int(record.get("priority", 0))),
        )  # fmt: skip
        if (entry.debtor_id, entry.creditor_id) != (record["debtor_id"], record["creditor_id"]):
            raise InputError(f"{record['obligation_id']}: carry key {key} changed parties")
        entry.remainder_ppm += int(record["remainder_ppm"])

    def _settle_remainders(self, seq: int) -> None:
        """Whole minor units the remainders reached become obligations of this cycle."""
        for key in sorted(self.remainders):
            entry = self.remainders[key]
            whole, entry.remainder_ppm = divmod(entry.remainder_ppm, PPM)
            if whole:
                o = self._open
                o.obligation_id.append(f"r:{key}:{seq}")
                o.debtor_id.append(entry.debtor_id)
                o.creditor_id.append(entry.creditor_id)
                o.amount_minor.append(whole)
                o.priority.append(entry.priority)
                o.source.append(entry.source)

    @property
    def open_count(self) -> int:
        return len(self._open)

    def close(
        self, marker: Mapping[str, Any], closed_at: datetime, ctx: CycleContext,
        rejected_count: int = 0,
    ) -> CycleOutcome:  # fmt: skip
        """Net the cycle, settle it per rail, check the invariants, and open the next one.
        ``rejected_count``: the ingest rejections of this currency the caller counted."""
        if ctx.currency != self.currency:
            raise InputError(f"context for {ctx.currency} given to the {self.currency} ledger")
        seq = self.cycle_seq + 1
        self._settle_remainders(seq)
        columns = _combine(self.carried, self._open)
        participants, debtor_idx, creditor_idx = _intern(
            columns["debtor_id"], columns["creditor_id"]
        )
        amount = np.asarray(columns["amount_minor"], dtype=np.int64)
        priority = np.asarray(columns["priority"], dtype=np.int64)
        caps = np.array([ctx.cap_minor.get(p, -1) for p in participants], dtype=np.int64)
        netted = _net(debtor_idx, creditor_idx, amount, priority, caps, len(participants))
        deferred = np.zeros(len(amount), dtype=bool)
        deferred[netted.deferred_idx] = True
        gross = checked_sum_array(amount) if len(amount) else 0
        settled_gross = checked_sum_array(amount[~deferred]) if len(amount) else 0
        if gross != settled_gross + netted.deferred_minor:
            raise InvariantError(f"{self.currency}: gross {gross} != settled + deferred")
        rails = {r: info.spec for r, info in ctx.rails.items()}
        settlements, treasury = settle_by_rail(
            participants, netted.position_minor, ctx.rail_of, rails
        )
        batches = [
            batch_record(  # only rails with something to settle get a batch
                s, currency=self.currency, iso_currency=ctx.iso_currency, cycle_seq=seq,
                model=ctx.rails[s.rail_id].spec.model,
                export_format=ctx.rails[s.rail_id].export_format,
                currency_exponent=ctx.currency_exponent,
                rail_decimals=ctx.rails[s.rail_id].spec.decimals,
                token_symbol=ctx.rails[s.rail_id].token_symbol, created_at=closed_at,
                identities=ctx.identities,
            )
            for s in settlements
            if len(s)
        ]  # fmt: skip
        carried = _carried(columns, deferred)
        report = _report(
            self, seq, marker, closed_at, ctx, columns, amount, deferred, gross, settled_gross,
            netted.net_minor, batches, treasury,
        )  # fmt: skip
        report["rejected_count"] = rejected_count
        positions = _positions(participants, netted.position_minor, amount, deferred,
                               debtor_idx, creditor_idx, seq, closed_at, ctx)  # fmt: skip
        self._advance(seq, carried, closed_at)
        return CycleOutcome(seq, batches, positions, report, carried)

    def _advance(self, seq: int, carried: Carried, closed_at: datetime) -> None:
        self._seen_closed.append(self._seen_open)
        self._seen_open = set(carried.obligation_id)
        self._open = _Open()
        self.carried = carried
        self.cycle_seq = seq
        self.opened_at = closed_at


@dataclass(frozen=True)
class _Netted:
    position_minor: I64
    deferred_idx: I64
    net_minor: int
    deferred_minor: int


def _net(
    debtor_idx: I64, creditor_idx: I64, amount: I64, priority: I64, caps: I64, n: int
) -> _Netted:
    """The netting core with the caps; an empty cycle nets to nothing."""
    if len(amount) == 0:
        return _Netted(np.zeros(n, dtype=np.int64), np.zeros(0, dtype=np.int64), 0, 0)
    result = net_currency(
        debtor_idx, creditor_idx, amount, n_participants=n, priority=priority, cap_minor=caps,
        mode="hub",
    )  # fmt: skip
    return _Netted(
        np.asarray(result.position_minor, dtype=np.int64),
        np.asarray(result.deferred_idx, dtype=np.int64), result.net_minor, result.deferred_minor,
    )  # fmt: skip


def _combine(carried: Carried, open_: _Open) -> dict[str, list[Any]]:
    """Carried obligations first (they waited longest), then the open cycle in log order."""
    names = ("obligation_id", "debtor_id", "creditor_id", "amount_minor", "priority", "source")
    return {n: [*getattr(carried, n), *getattr(open_, n)] for n in names}


def _intern(debtors: list[str], creditors: list[str]) -> tuple[list[str], I64, I64]:
    """Dense participant indices in sorted id order, so results never depend on arrival."""
    participants = sorted(set(debtors) | set(creditors))
    index = {p: i for i, p in enumerate(participants)}
    debtor_idx = np.fromiter((index[d] for d in debtors), dtype=np.int64, count=len(debtors))
    creditor_idx = np.fromiter((index[c] for c in creditors), dtype=np.int64, count=len(creditors))
    return participants, debtor_idx, creditor_idx


def _carried(columns: Mapping[str, list[Any]], deferred: npt.NDArray[np.bool_]) -> Carried:
    keep = np.flatnonzero(deferred).tolist()
    return Carried(**{n: tuple(columns[n][i] for i in keep) for n in columns})


def _positions(
    participants: list[str], position: I64, amount: I64, deferred: npt.NDArray[np.bool_],
    debtor_idx: I64, creditor_idx: I64, seq: int, closed_at: datetime, ctx: CycleContext,
) -> list[dict[str, Any]]:  # fmt: skip
    n = len(participants)
    settled = ~deferred
    payable = _sum_by(debtor_idx[settled], amount[settled], n)
    receivable = _sum_by(creditor_idx[settled], amount[settled], n)
    deferred_minor = _sum_by(debtor_idx[deferred], amount[deferred], n)
    out = []
    for i, participant in enumerate(participants):
        if receivable[i] - payable[i] != position[i]:
            raise InvariantError(f"{participant}: position does not match its obligations")
        out.append({
            "participant_id": participant, "currency": ctx.currency, "cycle_seq": seq,
            "rail_id": ctx.rail_of.get(participant), "receivable_minor": int(receivable[i]),
            "payable_minor": int(payable[i]), "net_minor": int(position[i]),
            "deferred_minor": int(deferred_minor[i]),
            "net_debit_cap_minor": ctx.cap_minor.get(participant), "as_of": closed_at,
        })  # fmt: skip
    return out


def _sum_by(index: I64, values: I64, n: int) -> I64:
    """Exact int64 group sums (np.bincount would go through float64). No overflow:
    amounts are positive and their total (the gross) was checked."""
    out = np.zeros(n, dtype=np.int64)
    np.add.at(out, index, values)
    return out


def _report(
    ledger: CurrencyLedger, seq: int, marker: Mapping[str, Any], closed_at: datetime,
    ctx: CycleContext, columns: Mapping[str, list[Any]], amount: I64,
    deferred: npt.NDArray[np.bool_], gross: int, settled_gross: int, net: int,
    batches: list[dict[str, Any]], treasury: list[Any],
) -> dict[str, Any]:  # fmt: skip
    carried_n = len(ledger.carried.obligation_id)
    failed = np.array([s == "FAILED_SETTLEMENT" for s in columns["source"]], dtype=bool)
    failed[:carried_n] = False  # a carried failure was counted in the cycle it arrived in
    return {
        "cycle_id": ids.cycle_id(ctx.currency, seq), "currency": ctx.currency, "cycle_seq": seq,
        "marker_id": marker["marker_id"], "opened_at": ledger.opened_at or closed_at,
        "closed_at": closed_at, "obligation_count": len(amount),
        "duplicate_count": ledger._open.duplicates, "gross_minor": gross,
        "settled_gross_minor": settled_gross, "net_minor": net,
        "netting_efficiency": 0.0 if settled_gross == 0 else 1.0 - net / settled_gross,
        "instruction_count": sum(b["instruction_count"] for b in batches),
        "deferred_count": int(deferred.sum()), "deferred_minor": int(amount[deferred].sum()),
        "carried_in_count": carried_n, "carried_in_minor": sum(ledger.carried.amount_minor),
        "failed_carried_count": int(failed.sum()),
        "failed_carried_minor": int(amount[failed].sum()), "rejected_count": 0,
        "batch_ids": [b["batch_id"] for b in batches],
        "treasury": [
            {"from_rail": t.from_rail, "to_rail": t.to_rail, "amount_minor": t.amount_minor}
            for t in treasury
        ],
        "timings": {"netting_ms": 0.0, "emit_ms": 0.0, "close_to_batch_ms": 0.0},
        "refdata_digest": ctx.refdata_digest,
    }  # fmt: skip
