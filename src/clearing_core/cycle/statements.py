"""Participant statements: what each participant was charged and paid per cycle.

Two halves, both pure. ``close_statements`` is what the netting stage knows at a
close (obligations in and out, the net position, deferrals, carried failures, the
instructions) and writes with the cycle's batches, in the same transaction.
``fold`` joins a participant's statements with the instructions' statuses as the
banks and chains answered them, and keeps the running balance.

Why the balance is folded at read time, not stored: an instruction's status
arrives after its cycle closed, sometimes after later cycles closed, so the
balance of cycle k changes whenever any earlier instruction settles or fails.

The running balance (``outstanding_minor``, signed like a position: negative is
still owed by the participant) after cycle k is the sum over cycles up to k of
(net position - the part that repeats carried failures) - what settled -
deferred obligations not yet netted. So the value settled over a run plus the
last balance is exactly what the participant's obligations add up to.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

from clearing_core import ids
from clearing_core.cycle.context import CycleContext
from clearing_core.cycle.ledger_columns import FAILED_SETTLEMENT, Carried, Columns
from clearing_core.encoding.records import (
    ParticipantStatement,
    Position,
    SettlementBatch,
    StatementDirection,
    StatementInstruction,
)
from clearing_core.errors import InvariantError

I64 = npt.NDArray[np.int64]
HOUSE = "CLEARING_HOUSE"


@dataclass(frozen=True)
class CycleColumns:
    """What a close netted, as the ledger holds it: per obligation its debtor and
    creditor index, amount, whether it was deferred and whether it repeats a failure."""

    participants: Sequence[str]
    debtor_idx: npt.NDArray[np.int32]
    creditor_idx: npt.NDArray[np.int32]
    amount: I64
    deferred: npt.NDArray[np.bool_]
    failed: npt.NDArray[np.bool_]


def repeats_of_failures(columns: Columns, carried: Carried) -> npt.NDArray[np.bool_]:
    """Which obligations of a close repeat a failed instruction: the failures of this
    cycle's acknowledgements and those a cap deferred from an earlier close (the
    ledger's own ``failed`` mask counts the former only, for the cycle report)."""
    repeats = np.array(columns.failed, dtype=bool)
    repeats[: len(carried.source)] = [s == FAILED_SETTLEMENT for s in carried.source]
    return repeats


def _sums(index: npt.NDArray[np.int32], values: I64, n: int) -> I64:
    out = np.zeros(n, dtype=np.int64)
    np.add.at(out, index, values)
    return out


def close_statements(
    cols: CycleColumns, positions: Sequence[Position], batches: Sequence[SettlementBatch], *,
    ctx: CycleContext, seq: int, closed_at: datetime,
) -> list[ParticipantStatement]:  # fmt: skip
    """One statement per participant of the cycle, checked: its instructions must
    reproduce its net position. ``positions`` are the close's, in the order of
    ``cols.participants``: their sums are not computed twice."""
    n, kept, currency = len(cols.participants), ~cols.deferred, ctx.currency
    d, c, a = cols.debtor_idx, cols.creditor_idx, cols.amount
    out_count = np.bincount(d, minlength=n) - np.bincount(d[cols.deferred], minlength=n)
    in_count = np.bincount(c, minlength=n) - np.bincount(c[cols.deferred], minlength=n)
    repeat, owed = kept & cols.failed, cols.deferred & ~cols.failed  # a deferred repeat
    carried = _sums(c[repeat], a[repeat], n) - _sums(d[repeat], a[repeat], n)  # is owed already
    deferred = _sums(c[owed], a[owed], n) - _sums(d[owed], a[owed], n)
    lines = _lines_by_participant(batches)
    statements: list[ParticipantStatement] = []
    for i, (participant, position) in enumerate(zip(cols.participants, positions, strict=True)):
        if participant == HOUSE:
            continue  # a failure the house paid is carried as its obligation: no statement
        assert position["participant_id"] == participant
        mine = lines.get(participant, [])
        signed = sum(_signed(line) for line in mine)
        if signed != position["net_minor"]:
            raise InvariantError(
                f"{currency} cycle {seq}: {participant}'s instructions ({signed}) do not "
                f"reproduce its position ({position['net_minor']})"
            )
        statements.append({
            "participant_id": participant, "currency": currency,
            "iso_currency": ctx.iso_currency, "currency_exponent": ctx.currency_exponent,
            "cycle_id": ids.cycle_id(currency, seq), "cycle_seq": seq, "closed_at": closed_at,
            "rail_id": ctx.rail_of.get(participant),
            "obligations_in_count": int(in_count[i]),
            "obligations_in_minor": position["receivable_minor"],
            "obligations_out_count": int(out_count[i]),
            "obligations_out_minor": position["payable_minor"],
            "net_position_minor": position["net_minor"],
            "failed_carried_net_minor": int(carried[i]),
            "deferred_net_minor": int(deferred[i]), "instructions": mine,
        })  # fmt: skip
    return statements


def _lines_by_participant(
    batches: Iterable[SettlementBatch],
) -> dict[str, list[StatementInstruction]]:
    lines: dict[str, list[StatementInstruction]] = {}
    for batch in batches:
        for i in batch["instructions"]:
            sides: tuple[tuple[str, StatementDirection, str], ...] = (
                (i["payer_id"], "DEBIT", i["payee_id"]),
                (i["payee_id"], "CREDIT", i["payer_id"]),
            )
            for party, direction, counterparty in sides:
                if party == HOUSE:
                    continue  # the house's rail accounts: not a participant's statement
                lines.setdefault(party, []).append({
                    "instruction_id": i["instruction_id"], "batch_id": batch["batch_id"],
                    "rail_id": batch["rail_id"], "direction": direction,
                    "counterparty_id": counterparty, "amount_minor": i["amount_minor"],
                    "end_to_end_id": i["end_to_end_id"],
                })  # fmt: skip
    return lines


def _signed(line: StatementInstruction) -> int:
    return int(line["amount_minor"]) * (1 if line["direction"] == "CREDIT" else -1)


@dataclass(frozen=True)
class StatementLine:
    """An instruction of a statement with where it stands now."""

    instruction: StatementInstruction
    status: str  # PENDING, SETTLED or FAILED
    reason_code: str | None

    @property
    def signed_minor(self) -> int:
        return _signed(self.instruction)


@dataclass(frozen=True)
class FoldedStatement:
    """A statement with its instructions' statuses and the running balance after it."""

    statement: ParticipantStatement
    lines: list[StatementLine]
    settled_minor: int  # signed: what moved
    pending_minor: int
    failed_minor: int  # signed: carried into the next cycle
    outstanding_minor: int  # the running balance still owed after this cycle

    @property
    def final(self) -> bool:
        return all(line.status != "PENDING" for line in self.lines)


def fold(
    statements: Iterable[ParticipantStatement],
    statuses: Mapping[str, tuple[str, str | None]],
) -> list[FoldedStatement]:
    """A participant's statements in cycle order, each with its lines' statuses
    (instruction id -> (status, reason code); none yet: PENDING) and the running
    balance per currency."""
    ordered = sorted(statements, key=lambda s: (s["currency"], s["cycle_seq"]))
    balance: dict[str, int] = {}
    out: list[FoldedStatement] = []
    for statement in ordered:
        lines = [StatementLine(i, *statuses.get(i["instruction_id"], ("PENDING", None)))
                 for i in statement["instructions"]]  # fmt: skip
        by_status = {s: sum(x.signed_minor for x in lines if x.status == s)
                     for s in ("SETTLED", "PENDING", "FAILED")}  # fmt: skip
        currency = statement["currency"]
        running = balance.get(currency, 0) + statement["net_position_minor"]
        running -= statement["failed_carried_net_minor"] + by_status["SETTLED"]
        balance[currency] = running
        outstanding = running + statement["deferred_net_minor"]
        out.append(FoldedStatement(statement, lines, by_status["SETTLED"], by_status["PENDING"],
                                   by_status["FAILED"], outstanding))  # fmt: skip
    return out
