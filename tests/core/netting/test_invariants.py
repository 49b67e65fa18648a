"""The invariant checks catch a corrupted result (they run on every call)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from clearing_core.errors import InvariantError
from clearing_core.netting import Instructions, check_currency_result, net_currency
from clearing_core.netting.invariants import exact_sum

DEBTOR = np.array([0, 1, 2, 0], np.int32)
CREDITOR = np.array([1, 2, 0, 2], np.int32)
AMOUNT = np.array([50, 30, 20, 40], np.int64)
CAP = np.array([60, -1, -1], np.int64)


def result_and_mask(mode: str = "hub") -> tuple:
    result = net_currency(DEBTOR, CREDITOR, AMOUNT, n_participants=3, cap_minor=CAP, mode=mode)
    settled = np.ones(4, bool)
    settled[result.deferred_idx] = False
    return result, settled


def check(result: object, settled: np.ndarray) -> None:
    check_currency_result(result, DEBTOR, CREDITOR, AMOUNT, settled, CAP)  # type: ignore[arg-type]


def test_a_clean_result_passes() -> None:
    for mode in ("hub", "direct"):
        result, settled = result_and_mask(mode)
        check(result, settled)
        assert result.deferred_count == 1
        assert result.position_minor[0] >= -60


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"position_minor": np.array([-10, 5, 6])}, "sum to"),
        ({"net_minor": 1}, "net_minor"),
        ({"gross_minor": 1}, "gross_minor"),
        ({"settled_gross_minor": 1}, "settled_gross_minor"),
        ({"deferred_minor": 1}, "deferred_minor"),
        ({"deferred_idx": np.array([], np.int64)}, "deferred count"),
    ],
)
def test_tampered_fields_are_caught(change: dict, match: str) -> None:
    result, settled = result_and_mask()
    with pytest.raises(InvariantError, match=match):
        check(replace(result, **change), settled)


def test_positions_that_break_a_cap_are_caught() -> None:
    result, settled = result_and_mask()
    broken = replace(result, position_minor=np.array([-90, 50, 40]), net_minor=90)
    with pytest.raises(InvariantError, match="below cap"):
        check(broken, settled)


def test_instructions_that_do_not_reproduce_positions_are_caught() -> None:
    result, settled = result_and_mask("direct")
    ins = result.instructions
    short = Instructions(ins.payer_idx, ins.payee_idx, ins.amount_minor - 1)
    with pytest.raises(InvariantError, match="reproduce"):
        check(replace(result, instructions=short), settled)
    bad = Instructions(ins.payer_idx, ins.payee_idx, -ins.amount_minor)
    with pytest.raises(InvariantError, match="malformed"):
        check(replace(result, instructions=bad), settled)
    hub = replace(result, mode="hub")
    with pytest.raises(InvariantError, match="hub mode"):
        check(hub, settled)


def test_exact_sum_does_not_wrap() -> None:
    values = np.array([2**62, 2**62, 2**62, -(2**62)], np.int64)
    assert exact_sum(values) == 2**63
    assert exact_sum(np.array([], np.int64)) == 0
