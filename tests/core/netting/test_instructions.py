"""Settlement instructions: exact reproduction of positions, transfer counts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clearing_core.errors import InputError
from clearing_core.netting import HUB, settlement_instructions
from tests.core.netting import reference as ref
from tests.core.netting.conftest import NETTING_SETTINGS


@st.composite
def zero_sum_positions(draw: st.DrawFn) -> np.ndarray:
    """Positions that sum to zero, with deliberately repeated magnitudes so
    that pairs and triples cancel often."""
    n = draw(st.integers(1, 14))
    pool = draw(st.lists(st.integers(1, 50), min_size=1, max_size=4))
    values = [draw(st.sampled_from(pool)) * draw(st.sampled_from([-1, 0, 1])) for _ in range(n)]
    position = np.array([*values, -sum(values)], dtype=np.int64)
    order = draw(st.permutations(range(position.shape[0])))
    return position[list(order)]


def rows(ins: object) -> list[tuple[int, int, int]]:
    return list(
        zip(ins.payer_idx.tolist(), ins.payee_idx.tolist(), ins.amount_minor.tolist(), strict=True)  # type: ignore[attr-defined]
    )


def as_position_dict(position: np.ndarray) -> dict[int, int]:
    return {int(p): int(position[p]) for p in np.flatnonzero(position)}


@NETTING_SETTINGS
@given(zero_sum_positions())
def test_hub_settles_every_position_through_the_clearing_house(position: np.ndarray) -> None:
    ins = settlement_instructions(position, "hub")
    assert len(ins) == np.count_nonzero(position)
    assert all((payer == HUB) != (payee == HUB) for payer, payee, _ in rows(ins))
    assert ref.apply(rows(ins)) == as_position_dict(position)  # the hub nets to zero
    assert all(amount > 0 for *_, amount in rows(ins))


@NETTING_SETTINGS
@given(zero_sum_positions())
def test_direct_settles_exactly_with_at_most_n_minus_1(position: np.ndarray) -> None:
    ins = settlement_instructions(position, "direct")
    nonzero = int(np.count_nonzero(position))
    assert len(ins) <= max(0, nonzero - 1)
    assert ref.apply(rows(ins)) == as_position_dict(position)
    assert HUB not in ins.payer_idx
    assert HUB not in ins.payee_idx
    pairs = [(payer, payee) for payer, payee, _ in rows(ins)]
    assert pairs == sorted(pairs)
    assert len(set(pairs)) == len(pairs)
    assert all(position[payer] < 0 < position[payee] for payer, payee in pairs)


@NETTING_SETTINGS
@given(zero_sum_positions())
def test_instructions_are_deterministic(position: np.ndarray) -> None:
    for mode in ("hub", "direct"):
        first = settlement_instructions(position, mode)
        second = settlement_instructions(position.copy(), mode)
        assert rows(first) == rows(second)


@NETTING_SETTINGS
@given(zero_sum_positions())
def test_netting_the_instructions_again_changes_nothing(position: np.ndarray) -> None:
    ins = settlement_instructions(position, "direct")
    again = np.zeros_like(position)
    for payer, payee, amount in rows(ins):
        again[payer] -= amount
        again[payee] += amount
    assert np.array_equal(again, position)
    assert rows(settlement_instructions(again, "direct")) == rows(ins)


@pytest.mark.parametrize(
    ("position", "expected_count"),
    [
        ([-5, 5, -7, 7, -9, 9], 3),  # three exact pairs: n/2, not n-1 = 5
        ([-10, 4, 6, -3, 3], 3),  # a triple and a pair: 2 + 1
        ([4, 6, -10, -2, -5, 7], 4),  # one-to-two triple and two-to-one triple
        ([-3, 1, 1, 1], 3),  # one group of four: n-1
        ([0, 0, 0], 0),
    ],
)
def test_direct_finds_groups_that_cancel(position: list[int], expected_count: int) -> None:
    array = np.array(position, dtype=np.int64)
    ins = settlement_instructions(array, "direct")
    assert len(ins) == expected_count
    assert ref.apply(rows(ins)) == as_position_dict(array)


def test_direct_greedy_pays_largest_to_largest() -> None:
    position = np.array([-2430000, 1820000, 1250000, -640000], dtype=np.int64)
    assert rows(settlement_instructions(position, "direct")) == [
        (0, 1, 1820000),
        (0, 2, 610000),
        (3, 2, 640000),
    ]


def test_unknown_mode_is_an_input_error() -> None:
    with pytest.raises(InputError, match="unknown settlement mode"):
        settlement_instructions(np.zeros(2, np.int64), "bilateral")  # type: ignore[arg-type]
