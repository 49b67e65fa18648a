"""One currency's clearing cycles: accumulate obligations, close deterministically.

Why a pure class: the netting worker, ``clearing replay`` and the tests drive
the same object with the same log and must get byte-identical outputs. Nothing
here reads a clock: the marker's log time stamps the outputs. Obligations are
kept columnar (participants interned on arrival, numbers in typed columns that
close copies into numpy; see ``ledger_columns``), duplicates of ids already
counted in recent cycles are dropped (the open cycle's ids as an exact set, the
closed cycles' as digests: ``counted_ids``), and obligations deferred by the
liquidity limits are carried, first in line, into the next cycle.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from clearing_core import ids
from clearing_core.cycle.context import CycleContext
from clearing_core.cycle.counted_ids import DIGEST_BYTES, CountedIds, digests_of
from clearing_core.cycle.ledger_columns import Carried as Carried
from clearing_core.cycle.ledger_columns import (
    Columns,
    CountedObligation,
    ObligationBatch,
    OpenColumns,
    carried_of,
    combine,
)
from clearing_core.cycle.settlement import TreasuryLine, batch_record, settle_by_rail
from clearing_core.cycle.statements import CycleColumns, close_statements, repeats_of_failures
from clearing_core.encoding.records import (
    CycleClose,
    CycleReport,
    ObligationSource,
    ParticipantStatement,
    Position,
    SettlementBatch,
)
from clearing_core.errors import InputError, InvariantError
from clearing_core.money import checked_sum_array
from clearing_core.netting import net_currency

SEEN_CYCLES = 8  # ids of this many closed cycles are remembered to drop late duplicates
PPM = 1_000_000  # remainders are in millionths of a minor unit
OPEN_OBLIGATIONS_MAX = 50_000_000
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]


@dataclass
class Remainder:
    """Sub-minor pricing remainders of one contract key, carried across cycles."""

    debtor_id: str
    creditor_id: str
    source: ObligationSource
    priority: int
    remainder_ppm: int = 0


@dataclass(frozen=True)
class CycleOutcome:
    """Everything a close emits, as records ready to encode."""

    cycle_seq: int
    batches: list[SettlementBatch]
    positions: list[Position]
    report: CycleReport
    carried: Carried
    statements: list[ParticipantStatement] = field(default_factory=list)


class CurrencyLedger:
    """The open cycle of one currency and what it remembers of recent ones."""

    def __init__(self, currency: str, cycle_seq: int = 0, carried: Carried | None = None,
                 opened_at: datetime | None = None) -> None:  # fmt: skip
        self.currency = currency
        self.cycle_seq = cycle_seq
        self.carried = carried or Carried()
        self.opened_at = opened_at
        self.remainders: dict[str, Remainder] = {}
        self._open = OpenColumns()
        self._open_ids()
        self._seen_closed = CountedIds(SEEN_CYCLES)

    def _open_ids(self) -> None:
        """The open cycle's counted ids start as the carried ones: an exact set, and
        their digests, which become a closed cycle's at close."""
        self._seen_open: set[str] = set(self.carried.obligation_id)
        self._seen_open_digests = bytearray(digests_of(self.carried.obligation_id))

    def remember(self, obligation_ids: Iterable[str]) -> None:
        """Mark ids as counted in an earlier cycle (rebuilding state after a restart)."""
        self._seen_closed.remember(digests_of(obligation_ids))

    def add(self, record: CountedObligation, log_time: datetime | None = None) -> bool:
        """Count an ``Obligation`` record once; False when its id was already counted."""
        return self._add(record, log_time)

    def _add(self, record: CountedObligation, log_time: datetime | None,
             looked_up: tuple[bytes, bool] | None = None) -> bool:  # fmt: skip
        """``add``; ``looked_up``: the id's digest and whether a closed cycle counted it,
        when ``add_batch`` looked its whole batch up."""
        if record["currency"] != self.currency:
            raise InputError(f"{record['obligation_id']}: currency {record['currency']} "
                             f"in the {self.currency} ledger")  # fmt: skip
        oid = record["obligation_id"]
        if oid in self._seen_open:
            return self._duplicate()
        digest, counted_closed = looked_up or self._look_up(oid)
        if counted_closed:
            return self._duplicate()
        o = self._open
        if len(o.obligation_id) >= OPEN_OBLIGATIONS_MAX:
            raise InputError(f"{self.currency}: more than {OPEN_OBLIGATIONS_MAX} open obligations")
        if self.opened_at is None and log_time is not None:
            self.opened_at = log_time
        self._seen_open.add(oid)
        self._seen_open_digests += digest
        if record.get("remainder_ppm"):
            self._add_remainder(record)
        amount = int(record["amount_minor"])
        if amount == 0:
            return True  # only a remainder: it settles once whole units accumulate
        o.append(oid, record["debtor_id"], record["creditor_id"], amount,
                 int(record.get("priority", 0)), record["source"])  # fmt: skip
        return True

    def _duplicate(self) -> bool:
        self._open.duplicates += 1
        return False

    def _look_up(self, obligation_id: str) -> tuple[bytes, bool]:
        digest = digests_of((obligation_id,))
        return digest, self._seen_closed.contains(digest)

    def _add_remainder(self, record: CountedObligation) -> None:
        self._carry(record["obligation_id"], record["debtor_id"], record["creditor_id"],
                    record["source"], int(record.get("priority", 0)),
                    int(record["remainder_ppm"]), record.get("carry_key"))  # fmt: skip

    def _carry(self, oid: str, debtor: str, creditor: str, source: ObligationSource, priority: int,
               remainder_ppm: int, key: str | None) -> None:  # fmt: skip
        if not 0 <= remainder_ppm < PPM:
            raise InputError(f"{oid}: remainder_ppm out of 0..999999")
        if not key:
            raise InputError(f"{oid}: a remainder without a carry_key")
        entry = self.remainders.get(key)
        if entry is None:
            entry = self.remainders[key] = Remainder(debtor, creditor, source, priority)
        elif entry.debtor_id != debtor or entry.creditor_id != creditor:
            raise InputError(f"{oid}: carry key {key} changed parties")
        entry.remainder_ppm += remainder_ppm

    def add_batch(self, batch: ObligationBatch) -> int:
        """``add`` for each row of ``batch`` in order; returns how many were duplicates.
        Why: the netting stage reads thousands of obligations per poll, and a call per
        obligation was most of its CPU. A batch whose ids are all new is counted in
        bulk; any other goes row by row through ``add``. An error leaves the ledger as
        unusable as ``add``'s would (the worker ends and re-reads the open cycle)."""
        if batch.currency != self.currency:
            raise InputError(f"a {batch.currency} batch given to the {self.currency} ledger")
        o, n = self._open, len(batch)
        if n == 0:
            return 0
        fresh = set(batch.obligation_id)
        digests = digests_of(batch.obligation_id)  # once: to look up, then to remember
        counted_closed = self._seen_closed.mask(digests)
        if (len(fresh) < n or len(o) + n > OPEN_OBLIGATIONS_MAX
                or not self._seen_open.isdisjoint(fresh) or counted_closed.any()):  # fmt: skip
            return self._add_rows(batch, digests, counted_closed.tolist())
        amounts = batch.amount_minor
        whole = None if all(amounts) else [i for i, a in enumerate(amounts) if a]
        o.extend(batch, whole)  # a zero amount is only a remainder, as in add
        for i, ppm in enumerate(batch.remainder_ppm):
            if ppm:
                self._carry(batch.obligation_id[i], batch.debtor_id[i], batch.creditor_id[i],
                            batch.source[i], int(batch.priority[i]), int(ppm),
                            batch.carry_key[i])  # fmt: skip
        self._seen_open |= fresh
        self._seen_open_digests += digests
        if self.opened_at is None:
            self.opened_at = log_time_of(batch.log_ms[0])
        return 0

    def _add_rows(self, batch: ObligationBatch, digests: bytes, counted_closed: list[bool]) -> int:
        """``add`` row by row (a batch with a duplicate), with the batch's digests and
        closed-cycle look-ups (the closed cycles do not change within a batch)."""
        logged = map(log_time_of, batch.log_ms)
        duplicates = 0
        for i, (r, t) in enumerate(zip(batch.records(), logged, strict=True)):
            digest = digests[i * DIGEST_BYTES : (i + 1) * DIGEST_BYTES]
            duplicates += not self._add(r, t, (digest, counted_closed[i]))
        return duplicates

    def _settle_remainders(self, seq: int) -> None:
        """Whole minor units the remainders reached become obligations of this cycle."""
        for key in sorted(self.remainders):
            entry = self.remainders[key]
            whole, entry.remainder_ppm = divmod(entry.remainder_ppm, PPM)
            if whole:
                self._open.append(f"r:{key}:{seq}", entry.debtor_id, entry.creditor_id, whole,
                                  entry.priority, entry.source)  # fmt: skip

    @property
    def open_count(self) -> int:
        return len(self._open)

    def close(
        self, marker: CycleClose, closed_at: datetime, ctx: CycleContext,
        rejected_count: int = 0,
    ) -> CycleOutcome:  # fmt: skip
        """Net the cycle, settle it per rail, check the invariants, and open the next one.
        ``rejected_count``: the ingest rejections of this currency the caller counted."""
        if ctx.currency != self.currency:
            raise InputError(f"context for {ctx.currency} given to the {self.currency} ledger")
        seq = self.cycle_seq + 1
        self._settle_remainders(seq)
        columns = combine(self.carried, self._open)
        participants = columns.participants  # sorted ids
        debtor_idx, creditor_idx = columns.debtor_idx, columns.creditor_idx
        amount, priority = columns.amount, columns.priority
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
        carried = carried_of(columns, deferred)
        report = _report(
            self, seq, marker, closed_at, ctx, columns, amount, deferred, gross, settled_gross,
            netted.net_minor, batches, treasury,
        )  # fmt: skip
        report["rejected_count"] = rejected_count
        positions = _positions(participants, netted.position_minor, amount, deferred,
                               debtor_idx, creditor_idx, seq, closed_at, ctx)  # fmt: skip
        statements = close_statements(
            CycleColumns(participants, debtor_idx, creditor_idx, amount, deferred,
                         repeats_of_failures(columns, self.carried)),
            positions, batches, ctx=ctx, seq=seq, closed_at=closed_at,
        )  # fmt: skip
        self._advance(seq, carried, closed_at)
        return CycleOutcome(seq, batches, positions, report, carried, statements)

    def _advance(self, seq: int, carried: Carried, closed_at: datetime) -> None:
        self._seen_closed.add_cycle(self._seen_open_digests)
        self._open = OpenColumns()
        self.carried = carried
        self._open_ids()
        self.cycle_seq = seq
        self.opened_at = closed_at


@dataclass(frozen=True)
class _Netted:
    position_minor: I64
    deferred_idx: I64
    net_minor: int
    deferred_minor: int


def log_time_of(log_ms: int) -> datetime:
    """A record's log time (Kafka timestamp, ms) as the ledger's aware datetime."""
    return datetime.fromtimestamp(log_ms / 1000, tz=UTC)


def _net(
    debtor_idx: I32, creditor_idx: I32, amount: I64, priority: I64, caps: I64, n: int
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


def _positions(
    participants: list[str], position: I64, amount: I64, deferred: npt.NDArray[np.bool_],
    debtor_idx: I32, creditor_idx: I32, seq: int, closed_at: datetime, ctx: CycleContext,
) -> list[Position]:  # fmt: skip
    n = len(participants)
    settled = ~deferred
    payable = _sum_by(debtor_idx[settled], amount[settled], n)
    receivable = _sum_by(creditor_idx[settled], amount[settled], n)
    deferred_minor = _sum_by(debtor_idx[deferred], amount[deferred], n)
    out: list[Position] = []
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


def _sum_by(index: I32, values: I64, n: int) -> I64:
    """Exact int64 group sums (np.bincount would go through float64). No overflow:
    amounts are positive and their total (the gross) was checked."""
    out = np.zeros(n, dtype=np.int64)
    np.add.at(out, index, values)
    return out


def _report(
    ledger: CurrencyLedger, seq: int, marker: CycleClose, closed_at: datetime,
    ctx: CycleContext, columns: Columns, amount: I64,
    deferred: npt.NDArray[np.bool_], gross: int, settled_gross: int, net: int,
    batches: list[SettlementBatch], treasury: list[TreasuryLine],
) -> CycleReport:  # fmt: skip
    carried_n = len(ledger.carried.obligation_id)
    failed = columns.failed  # a carried failure was counted in the cycle it arrived in
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


def rehearse_close(ctx: CycleContext, at: datetime) -> CycleOutcome | None:
    """Close a throwaway cycle of the currency once: two obligations between the first
    two participants of each rail. Why: the first close in a process loads (or, with an
    empty cache, compiles) every kernel that close uses, which took 1.9-2.5 s in the
    end-to-end bench; a worker rehearses at start so that no real close pays it."""
    by_rail: dict[str, list[str]] = {}
    for participant, rail in sorted(ctx.rail_of.items()):
        by_rail.setdefault(rail, []).append(participant)
    ledger = CurrencyLedger(ctx.currency)
    ledger.remember(())  # an empty closed cycle, so that the look-up kernels load too:
    ledger._seen_closed.mask(digests_of(("a", "b")))  # add_batch's here, add's below
    for rail, members in sorted(by_rail.items()):
        if len(members) < 2:
            continue
        for n, (debtor, creditor, amount) in enumerate(
            ((members[0], members[1], 100), (members[1], members[0], 40))
        ):
            ledger.add({
                "obligation_id": f"rehearsal:{rail}:{n}", "debtor_id": debtor,
                "creditor_id": creditor, "currency": ctx.currency, "amount_minor": amount,
                "priority": n, "source": "PAYMENT", "remainder_ppm": 0, "carry_key": None,
            })  # fmt: skip
    if ledger.open_count == 0:
        return None
    marker: CycleClose = {"marker_id": "rehearsal", "currency": ctx.currency, "reason": "MANUAL",
              "requested_by": "rehearsal", "requested_at": at}  # fmt: skip
    return ledger.close(marker, at, ctx)
