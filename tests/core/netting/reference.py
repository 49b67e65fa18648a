"""A naive pure-Python reference for the netting kernels: dicts and loops,
Python integers (no wraparound), written for obviousness, not speed."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from itertools import combinations

INT64_MAX = 2**63 - 1

Row = tuple[int, int, int, int]  # debtor, creditor, currency, amount


def positions(rows: Sequence[Row]) -> dict[tuple[int, int], int]:
    """Receivable minus payable per (participant, currency), zeros left out."""
    out: dict[tuple[int, int], int] = defaultdict(int)
    for debtor, creditor, currency, amount in rows:
        out[(debtor, currency)] -= amount
        out[(creditor, currency)] += amount
    return {key: value for key, value in out.items() if value != 0}


def gross(rows: Sequence[Row]) -> dict[int, int]:
    out: dict[int, int] = defaultdict(int)
    for _, _, currency, amount in rows:
        out[currency] += amount
    return dict(out)


def first_overflow(rows: Sequence[Row]) -> int | None:
    """Index of the obligation at which some currency's running gross passes int64."""
    running: dict[int, int] = defaultdict(int)
    for i, (_, _, currency, amount) in enumerate(rows):
        running[currency] += amount
        if running[currency] > INT64_MAX:
            return i
    return None


def first_problem(
    rows: Sequence[Row], n_participants: int, n_currencies: int
) -> tuple[int, str] | None:
    """The first obligation, in input order, that fails a check or takes its
    currency's running gross past int64, with the error code; None if none."""
    running: dict[int, int] = defaultdict(int)
    for i, (debtor, creditor, currency, amount) in enumerate(rows):
        if not 0 <= debtor < n_participants:
            return i, "debtor"
        if not 0 <= creditor < n_participants:
            return i, "creditor"
        if not 0 <= currency < n_currencies:
            return i, "currency"
        if amount <= 0:
            return i, "amount"
        if debtor == creditor:
            return i, "self"
        running[currency] += amount
        if running[currency] > INT64_MAX:
            return i, "overflow"
    return None


def bilateral(rows: Sequence[Row]) -> dict[tuple[int, int, int], int]:
    """Sum per ordered (currency, debtor, creditor)."""
    out: dict[tuple[int, int, int], int] = defaultdict(int)
    for debtor, creditor, currency, amount in rows:
        out[(currency, debtor, creditor)] += amount
    return dict(out)


def bilateral_net(rows: Sequence[Row]) -> dict[int, int]:
    pairs = bilateral(rows)
    out: dict[int, int] = defaultdict(int)
    for (currency, a, b), amount in pairs.items():
        if a < b:
            out[currency] += abs(amount - pairs.get((currency, b, a), 0))
        elif (currency, b, a) not in pairs:
            out[currency] += amount
    return dict(out)


def apply(instructions: Sequence[tuple[int, int, int]]) -> dict[int, int]:
    """Balances after applying (payer, payee, amount) to zero, zeros left out."""
    out: dict[int, int] = defaultdict(int)
    for payer, payee, amount in instructions:
        out[payer] -= amount
        out[payee] += amount
    return {key: value for key, value in out.items() if value != 0}


def within_caps(
    debtors: Sequence[int],
    creditors: Sequence[int],
    amounts: Sequence[int],
    caps: Sequence[int],
    settled: Sequence[bool],
) -> bool:
    net: dict[int, int] = defaultdict(int)
    for d, c, a, s in zip(debtors, creditors, amounts, settled, strict=True):
        if s:
            net[d] -= a
            net[c] += a
    return all(cap < 0 or net[p] >= -cap for p, cap in enumerate(caps))


def best_settled_value(
    debtors: Sequence[int], creditors: Sequence[int], amounts: Sequence[int], caps: Sequence[int]
) -> int:
    """Exact optimum by enumeration over obligations of capped debtors (tiny only)."""
    free = [i for i, d in enumerate(debtors) if caps[d] < 0]
    choices = [i for i, d in enumerate(debtors) if caps[d] >= 0]
    assert len(choices) <= 16, "enumeration is for tiny instances"
    best = 0
    for k in range(len(choices) + 1):
        for chosen in combinations(choices, k):
            settled = [False] * len(amounts)
            for i in (*free, *chosen):
                settled[i] = True
            if within_caps(debtors, creditors, amounts, caps, settled):
                best = max(best, sum(a for a, s in zip(amounts, settled, strict=True) if s))
    return best
