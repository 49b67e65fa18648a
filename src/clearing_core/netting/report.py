"""Offline netting of CSV files and its JSON answer (DESIGN §7, ``clearing net``).

Why here and not in the CLI: the command stays a thin adapter, and the same
answer (names, ordering, JSON shape) is testable without a terminal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import numpy as np
import pyarrow as pa

from clearing_core.errors import InputError
from clearing_core.netting.api import net_obligations
from clearing_core.netting.csvio import ObligationTable, read_limits_csv, read_obligations_csv
from clearing_core.netting.types import (
    HUB_ACCOUNT,
    CurrencyResult,
    NettingResult,
    ObligationInputError,
)


@dataclass(frozen=True)
class OfflineNetting:
    """The obligations read from a file and what netting made of them."""

    table: ObligationTable
    result: NettingResult

    def currency_code(self, result: CurrencyResult) -> str:
        return self.table.currencies[result.currency_idx]

    def account(self, index: int) -> str:
        return HUB_ACCOUNT if index < 0 else self.table.participants[index]


def net_csv_files(obligations: Path, limits: Path | None, mode: str) -> OfflineNetting:
    """Read, validate and net the files; every input problem is an
    ``InputError`` naming the file and line."""
    table = read_obligations_csv(obligations)
    caps = read_limits_csv(limits, table) if limits is not None else None
    try:
        result = net_obligations(
            table.debtor_idx,
            table.creditor_idx,
            table.currency_idx,
            table.amount_minor,
            n_participants=len(table.participants),
            n_currencies=len(table.currencies),
            priority=table.priority,
            cap_minor=caps,
            mode=mode,
        )
    except ObligationInputError as exc:
        reason = exc.reason
        if exc.code == "overflow":
            currency = table.currencies[int(table.currency_idx[exc.index])]
            reason = f"the sum of amount_minor in {currency} overflows int64"
        raise InputError(f"{table.where(exc.index)}: {reason}") from exc
    return OfflineNetting(table=table, result=result)


class NetInstruction(TypedDict):
    payer: str
    payee: str
    amount_minor: int


class CurrencyReport(TypedDict):
    """One currency of ``clearing net --json``."""

    positions: dict[str, int]
    instructions: list[NetInstruction]
    deferred: list[str]
    gross_minor: int
    net_minor: int
    settled_gross_minor: int


class NetReport(TypedDict):
    """What ``clearing net --json`` prints."""

    currencies: dict[str, CurrencyReport]


def currency_dict(netting: OfflineNetting, result: CurrencyResult) -> CurrencyReport:
    """One currency's JSON object: non-zero positions (+ receives) by
    participant, instructions by payer then payee, deferred ids in file order."""
    names = netting.table.participants
    position = result.position_minor
    positions = {names[p]: int(position[p]) for p in np.flatnonzero(position).tolist()}
    ins = result.instructions
    rows = sorted(
        (netting.account(payer), netting.account(payee), amount)
        for payer, payee, amount in zip(
            ins.payer_idx.tolist(), ins.payee_idx.tolist(), ins.amount_minor.tolist(), strict=True
        )
    )
    taken = netting.table.obligation_ids.take(pa.array(result.deferred_idx))
    deferred: list[str] = taken.to_pylist()
    return {
        "positions": positions,
        "instructions": [
            {"payer": payer, "payee": payee, "amount_minor": amount}
            for payer, payee, amount in rows
        ],
        "deferred": deferred,
        "gross_minor": result.gross_minor,
        "net_minor": result.net_minor,
        "settled_gross_minor": result.settled_gross_minor,
    }


def report_dict(netting: OfflineNetting) -> NetReport:
    """The one JSON object ``clearing net --json`` prints."""
    return {
        "currencies": {
            netting.currency_code(result): currency_dict(netting, result)
            for result in netting.result.currencies
        }
    }
