"""The open cycle's obligations as typed columns, and their union with the carried ones.

Why: ``CurrencyLedger.add`` runs once per obligation while ``close`` must turn
a million of them into arrays quickly. So ``add`` interns participant ids and
sources on arrival into small per-cycle tables (id -> index, in arrival
order) and keeps indices and amounts in ``array`` columns, which close copies
into numpy with one ``memcpy`` each instead of walking millions of strings.
At close the participants are renumbered once, in sorted id order, so that
results never depend on arrival order (nor on which cycle a table was built in).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Final, NotRequired, TypedDict

import numpy as np
import numpy.typing as npt

from clearing_core.encoding.records import CarriedObligation, ObligationSource
from clearing_core.errors import InputError
from clearing_core.money import MoneyOverflowError

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
FAILED_SETTLEMENT: Final = "FAILED_SETTLEMENT"
assert array("i").itemsize == 4  # int32 below
assert array("q").itemsize == 8  # int64 below


class CountedObligation(TypedDict):
    """The fields of an ``Obligation`` record that the ledger counts: a whole decoded
    ``Obligation`` is one, and so is a row of an ``ObligationBatch``."""

    obligation_id: str
    debtor_id: str
    creditor_id: str
    currency: str
    amount_minor: int
    priority: NotRequired[int]
    source: ObligationSource
    remainder_ppm: NotRequired[int]
    carry_key: NotRequired[str | None]


@dataclass(frozen=True)
class Carried:
    """Obligations carried into the next cycle, columnar."""

    obligation_id: tuple[str, ...] = ()
    debtor_id: tuple[str, ...] = ()
    creditor_id: tuple[str, ...] = ()
    amount_minor: tuple[int, ...] = ()
    priority: tuple[int, ...] = ()
    source: tuple[ObligationSource, ...] = ()

    def records(self) -> list[CarriedObligation]:
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
class OpenColumns:
    """The open cycle's obligations in log order. ``debtor``/``creditor`` index
    ``participants`` (id -> index in arrival order), ``source`` indexes ``sources``."""

    obligation_id: list[str] = field(default_factory=list)
    debtor: array[int] = field(default_factory=lambda: array("i"))
    creditor: array[int] = field(default_factory=lambda: array("i"))
    amount_minor: array[int] = field(default_factory=lambda: array("q"))
    priority: array[int] = field(default_factory=lambda: array("q"))
    source: array[int] = field(default_factory=lambda: array("i"))
    participants: dict[str, int] = field(default_factory=dict)
    sources: dict[ObligationSource, int] = field(default_factory=dict)
    duplicates: int = 0

    def __len__(self) -> int:
        return len(self.obligation_id)

    def append(
        self, oid: str, debtor: str, creditor: str, amount: int, priority: int,
        source: ObligationSource,
    ) -> None:  # fmt: skip
        """One obligation; an amount or priority outside int64 raises and leaves
        the columns as they were (an unused table entry is never a participant)."""
        table, codes = self.participants, self.sources
        d = table.setdefault(debtor, len(table))
        c = table.setdefault(creditor, len(table))
        s = codes.setdefault(source, len(codes))
        amounts = self.amount_minor
        try:
            amounts.append(amount)
            self.priority.append(priority)
        except OverflowError:
            del amounts[len(self.obligation_id) :]
            raise MoneyOverflowError(f"{oid}: amount or priority outside int64") from None
        self.debtor.append(d)
        self.creditor.append(c)
        self.source.append(s)
        self.obligation_id.append(oid)

    def extend(self, batch: ObligationBatch, rows: Sequence[int] | None = None) -> None:
        """``append`` for each row of ``batch`` (all rows when None), in one call per
        column; participants are interned in the same order as ``append`` would."""
        pick = rows_of(rows)
        try:
            amounts = array("q", pick(batch.amount_minor))
            priorities = array("q", pick(batch.priority))
        except OverflowError:
            raise MoneyOverflowError(
                f"{batch.currency}: an amount or priority outside int64 in a batch"
            ) from None
        table, codes = self.participants, self.sources
        parties = zip(pick(batch.debtor_id), pick(batch.creditor_id), strict=True)
        interned = array("i", [table.setdefault(p, len(table)) for pair in parties for p in pair])
        self.debtor.extend(interned[0::2])
        self.creditor.extend(interned[1::2])
        sources = [codes.setdefault(s, len(codes)) for s in pick(batch.source)]
        self.source.extend(array("i", sources))
        self.amount_minor.extend(amounts)
        self.priority.extend(priorities)
        self.obligation_id.extend(pick(batch.obligation_id))


@dataclass(frozen=True)
class ObligationBatch:
    """Consecutive ``Obligation`` records of one currency, in log order, as columns;
    ``log_ms`` is each record's log time. The netting stage reads obligations in
    batches of thousands and counts them with one ledger call per batch."""

    currency: str
    obligation_id: Sequence[str]
    debtor_id: Sequence[str]
    creditor_id: Sequence[str]
    amount_minor: Sequence[int]
    priority: Sequence[int]
    source: Sequence[ObligationSource]
    remainder_ppm: Sequence[int]
    carry_key: Sequence[str | None]
    log_ms: Sequence[int]

    def __post_init__(self) -> None:
        n = len(self.obligation_id)
        lengths = {len(getattr(self, f)) for f in _BATCH_COLUMNS}
        if lengths != {n}:
            raise InputError(f"{self.currency}: obligation batch columns of lengths {lengths}")

    def __len__(self) -> int:
        return len(self.obligation_id)

    def records(self) -> list[CountedObligation]:
        """Each row as the record ``CurrencyLedger.add`` takes."""
        columns = zip(
            self.obligation_id, self.debtor_id, self.creditor_id, self.amount_minor,
            self.priority, self.source, self.remainder_ppm, self.carry_key, strict=True,
        )  # fmt: skip
        return [
            {"obligation_id": o, "debtor_id": d, "creditor_id": c, "currency": self.currency,
             "amount_minor": a, "priority": p, "source": s, "remainder_ppm": r, "carry_key": k}
            for o, d, c, a, p, s, r, k in columns
        ]  # fmt: skip


_BATCH_COLUMNS = ("obligation_id", "debtor_id", "creditor_id", "amount_minor", "priority",
                  "source", "remainder_ppm", "carry_key", "log_ms")  # fmt: skip


def rows_of(rows: Sequence[int] | None) -> Callable[[Sequence[Any]], list[Any]]:
    """A function taking the rows ``rows`` of a column (the whole column when None)."""
    if rows is None:
        return list
    if len(rows) <= 1:
        return lambda column: [column[i] for i in rows]
    take = itemgetter(*rows)
    return lambda column: list(take(column))


@dataclass(frozen=True)
class Columns:
    """Carried obligations first (they waited longest), then the open cycle in log
    order, as arrays; participant indices number ``participants`` (sorted ids)."""

    participants: list[str]
    debtor_idx: I32
    creditor_idx: I32
    amount: I64
    priority: I64
    failed: npt.NDArray[np.bool_]  # open FAILED_SETTLEMENT obligations (not carried ones)
    carried: Carried
    open_: OpenColumns


def _copy(column: array[int], dtype: type[np.int32] | type[np.int64]) -> npt.NDArray[Any]:
    """A numpy copy of an ``array`` column (no view stays behind to pin its buffer)."""
    return np.frombuffer(column, dtype=dtype).copy()


def combine(carried: Carried, open_: OpenColumns) -> Columns:
    table = dict(open_.participants)
    carried_d = [table.setdefault(p, len(table)) for p in carried.debtor_id]
    carried_c = [table.setdefault(p, len(table)) for p in carried.creditor_id]
    debtor = np.concatenate([np.array(carried_d, np.int32), _copy(open_.debtor, np.int32)])
    creditor = np.concatenate([np.array(carried_c, np.int32), _copy(open_.creditor, np.int32)])
    names = list(table)
    present = np.zeros(len(names), dtype=bool)
    present[debtor] = True
    present[creditor] = True
    order = sorted(np.flatnonzero(present).tolist(), key=names.__getitem__)
    remap = np.zeros(len(names), dtype=np.int32)
    remap[np.array(order, dtype=np.intp)] = np.arange(len(order), dtype=np.int32)
    amount = np.concatenate(
        [np.array(carried.amount_minor, np.int64), _copy(open_.amount_minor, np.int64)]
    )
    priority = np.concatenate(
        [np.array(carried.priority, np.int64), _copy(open_.priority, np.int64)]
    )
    failed_code = open_.sources.get(FAILED_SETTLEMENT, -1)
    failed = np.concatenate([
        np.zeros(len(carried.obligation_id), dtype=bool),
        np.frombuffer(open_.source, dtype=np.int32) == failed_code,
    ])  # fmt: skip
    return Columns(
        [names[i] for i in order], remap[debtor], remap[creditor], amount, priority, failed,
        carried, open_,
    )  # fmt: skip


def carried_of(columns: Columns, deferred: npt.NDArray[np.bool_]) -> Carried:
    """The deferred obligations, exactly as they arrived, in cycle order."""
    keep = np.flatnonzero(deferred)
    c, o = columns.carried, columns.open_
    n = len(c.obligation_id)
    old = keep[keep < n].tolist()
    new = (keep[keep >= n] - n).tolist()
    source_names = list(o.sources)
    parts = columns.participants
    return Carried(
        obligation_id=(*(c.obligation_id[i] for i in old), *(o.obligation_id[i] for i in new)),
        debtor_id=tuple(parts[i] for i in columns.debtor_idx[keep].tolist()),
        creditor_id=tuple(parts[i] for i in columns.creditor_idx[keep].tolist()),
        amount_minor=tuple(columns.amount[keep].tolist()),
        priority=tuple(columns.priority[keep].tolist()),
        source=(*(c.source[i] for i in old), *(source_names[o.source[i]] for i in new)),
    )
