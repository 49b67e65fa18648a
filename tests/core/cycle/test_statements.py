"""Participant statements (issue 18, item 4): what the close writes, and the fold that
joins the instructions' statuses and keeps the running balance.

The property: whatever the banks answer and whatever the caps defer, a
participant's settled lines over all its statements plus its last running balance
are exactly the net of the obligations it was given."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from clearing_core.cycle.ledger import CurrencyLedger
from clearing_core.cycle.statements import fold
from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.encoding.records import ParticipantStatement
from tests.core.cycle.test_cycle import T0, context, marker, obligation

PARTIES = ("DC", "GPU", "SOLAR", "LEASE")


def test_a_close_writes_one_statement_per_participant(codec: SingleObjectCodec) -> None:
    ledger = CurrencyLedger("CNH")
    ledger.add(obligation("a", "DC", "SOLAR", 1_250_000))
    ledger.add(obligation("b", "SOLAR", "LEASE", 950_000))
    ledger.add(obligation("c", "GPU", "SOLAR", 640_000))
    ledger.add(obligation("d", "DC", "LEASE", 900_000))  # deferred: DC's cap
    outcome = ledger.close(marker(1), T0, context(caps={"DC": 1_300_000}))
    by = {s["participant_id"]: s for s in outcome.statements}
    assert sorted(by) == ["DC", "GPU", "LEASE", "SOLAR"]
    dc, solar = by["DC"], by["SOLAR"]
    assert (dc["obligations_out_count"], dc["obligations_out_minor"]) == (1, 1_250_000)
    assert (dc["net_position_minor"], dc["deferred_net_minor"]) == (-1_250_000, -900_000)
    assert by["LEASE"]["deferred_net_minor"] == 900_000
    assert (solar["obligations_in_count"], solar["obligations_in_minor"]) == (2, 1_890_000)
    assert solar["net_position_minor"] == 940_000
    assert [(i["direction"], i["amount_minor"]) for i in dc["instructions"]] == [
        ("DEBIT", 1_250_000)]  # fmt: skip
    for statement in outcome.statements:
        codec.encode("ParticipantStatement", statement)


def _cycles(rng: random.Random, cycles: int, failure_ratio: float) -> tuple[
    dict[str, list[ParticipantStatement]], dict[str, tuple[str, str | None]], dict[str, int]
]:  # fmt: skip
    """Random cycles where the bank fails some instructions, each failure carried into
    the next cycle as its obligation; every answer is final."""
    ledger = CurrencyLedger("CNH")
    statements: dict[str, list[ParticipantStatement]] = defaultdict(list)
    statuses: dict[str, tuple[str, str | None]] = {}
    truth: dict[str, int] = defaultdict(int)
    carry: list[dict[str, Any]] = []
    for n in range(1, cycles + 1):
        for k in range(rng.randint(0, 6)):
            debtor, creditor = rng.sample(PARTIES, 2)
            amount = rng.randint(1, 2_000_000)
            truth[debtor] -= amount
            truth[creditor] += amount
            ledger.add(obligation(f"o{n}-{k}", debtor, creditor, amount))
        for failed in carry:
            ledger.add(failed)
        outcome = ledger.close(marker(n), T0, context(caps={"GPU": 1_500_000}))
        carry = []
        for statement in outcome.statements:
            statements[statement["participant_id"]].append(statement)
        for batch in outcome.batches:
            for i in batch["instructions"]:
                if rng.random() < failure_ratio:
                    statuses[i["instruction_id"]] = ("FAILED", "AM04")
                    carry.append(obligation(f"f:{i['instruction_id']}", i["payer_id"],
                                            i["payee_id"], i["amount_minor"], priority=100,
                                            source="FAILED_SETTLEMENT"))  # fmt: skip
                else:
                    statuses[i["instruction_id"]] = ("SETTLED", None)
    return statements, statuses, truth


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 8), st.sampled_from([0.0, 0.2, 0.5]))
def test_settled_plus_the_last_balance_is_the_obligations_net(
    seed: int, cycles: int, failure_ratio: float
) -> None:
    statements, statuses, truth = _cycles(random.Random(seed), cycles, failure_ratio)
    for party in PARTIES:
        folded = fold(statements.get(party, []), statuses)
        settled = sum(f.settled_minor for f in folded)
        outstanding = folded[-1].outstanding_minor if folded else 0
        assert settled + outstanding == truth.get(party, 0), party
        for f in folded:
            lines = sum(line.signed_minor for line in f.lines)
            assert lines == f.statement["net_position_minor"]
            assert f.settled_minor + f.pending_minor + f.failed_minor == lines


def test_a_line_without_an_answer_is_pending() -> None:
    ledger = CurrencyLedger("CNH")
    ledger.add(obligation("a", "DC", "SOLAR", 1_000))
    outcome = ledger.close(marker(1), T0, context())
    dc = next(s for s in outcome.statements if s["participant_id"] == "DC")
    (folded,) = fold([dc], {})
    assert ([line.status for line in folded.lines], folded.final) == (["PENDING"], False)
    assert (folded.pending_minor, folded.outstanding_minor) == (-1_000, -1_000)
