"""``CurrencyLedger.add_batch`` counts a batch exactly as ``add`` counts its rows one
by one: same open columns, remainders, duplicates and the same close, byte for byte."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearing_core.cycle.ledger import CurrencyLedger, log_time_of
from clearing_core.cycle.ledger_columns import ObligationBatch
from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.errors import InputError
from clearing_core.money import MoneyOverflowError
from tests.core.cycle.test_cycle import T0, context, marker, obligation, random_log

LOG_MS0 = 1_795_000_000_000


def batch_of(records: list[dict[str, Any]], first_ms: int) -> ObligationBatch:
    def column(name: str, default: Any = None) -> list[Any]:
        return [r.get(name, default) for r in records]

    return ObligationBatch(
        "CNH", column("obligation_id"), column("debtor_id"), column("creditor_id"),
        column("amount_minor"), column("priority", 0), column("source"),
        column("remainder_ppm", 0), column("carry_key"),
        list(range(first_ms, first_ms + len(records))),
    )  # fmt: skip


def state(ledger: CurrencyLedger) -> tuple[Any, ...]:
    o = ledger._open
    return (
        o.obligation_id, o.debtor.tolist(), o.creditor.tolist(), o.amount_minor.tolist(),
        o.priority.tolist(), o.source.tolist(), list(o.participants.items()),
        list(o.sources.items()), o.duplicates, ledger.opened_at,
        {k: vars(v) for k, v in ledger.remainders.items()},
    )  # fmt: skip


def run_both(log: list[list[dict[str, Any]]], cuts: random.Random,
             codec: SingleObjectCodec) -> int:  # fmt: skip
    """Each cycle fed row by row to one ledger and in random chunks to the other;
    returns how many chunks went in bulk (all new ids)."""
    one, bulk = CurrencyLedger("CNH"), CurrencyLedger("CNH")
    ms, bulked, caps = LOG_MS0, 0, {"DC": 600_000, "GPU": 900_000, "CLEARING_HOUSE": 0}
    for n, cycle in enumerate(log):
        start = 0
        while start < len(cycle):
            chunk = cycle[start : start + cuts.randint(1, 80)]
            batch = batch_of(chunk, ms)
            for i, record in enumerate(chunk):
                one.add(record, log_time_of(ms + i))
            before = bulk._open.duplicates
            duplicates = bulk.add_batch(batch)
            assert duplicates == bulk._open.duplicates - before
            bulked += duplicates == 0 and len(set(batch.obligation_id)) == len(chunk)
            assert state(bulk) == state(one)
            start, ms = start + len(chunk), ms + len(chunk)
        at = T0 + timedelta(minutes=n)
        a, b = (x.close(marker(n), at, context(caps=caps)) for x in (one, bulk))
        assert [codec.encode("SettlementBatch", x) for x in a.batches] == [
            codec.encode("SettlementBatch", x) for x in b.batches
        ]
        assert (a.positions, a.report, a.carried) == (b.positions, b.report, b.carried)
    return bulked


def test_random_logs_count_alike_in_chunks_and_one_by_one(codec: SingleObjectCodec) -> None:
    bulked = run_both(random_log(seed=5, cycles=6, per_cycle=400), random.Random(2), codec)
    assert bulked > 10  # the bulk path ran, not only the row-by-row one


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_any_chunking_counts_alike(codec: SingleObjectCodec, seed: int) -> None:
    run_both(random_log(seed=seed, cycles=3, per_cycle=60), random.Random(seed), codec)


def test_a_batch_of_another_currency_is_refused() -> None:
    batch = batch_of([obligation("a", "DC", "SOLAR", 5)], LOG_MS0)
    with pytest.raises(InputError, match="a USD batch given to the CNH ledger"):
        CurrencyLedger("CNH").add_batch(ObligationBatch("USD", *list(vars(batch).values())[1:]))


def test_an_amount_outside_int64_leaves_the_open_cycle_whole() -> None:
    ledger = CurrencyLedger("CNH")
    ledger.add_batch(batch_of([obligation("a", "DC", "SOLAR", 700)], LOG_MS0))
    big = batch_of([obligation("b", "GPU", "LEASE", 5), obligation("c", "GPU", "LEASE", 2**63)],
                   LOG_MS0 + 1)  # fmt: skip
    with pytest.raises(MoneyOverflowError):
        ledger.add_batch(big)
    outcome = ledger.close(marker(1), T0, context())
    assert outcome.report["gross_minor"] == 700
    assert outcome.report["opened_at"] == log_time_of(LOG_MS0)


def test_columns_of_unequal_lengths_are_refused() -> None:
    batch = batch_of([obligation("a", "DC", "SOLAR", 5), obligation("b", "DC", "GPU", 7)], LOG_MS0)
    with pytest.raises(InputError, match="columns of lengths"):
        ObligationBatch(**{**vars(batch), "amount_minor": [5]})
