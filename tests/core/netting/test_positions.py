"""Net positions, bilateral compression and statistics against the naive reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clearing_core.errors import InputError
from clearing_core.netting import (
    ObligationInputError,
    bilateral_compress,
    net_positions,
    netting_stats,
)
from tests.core.netting import reference as ref
from tests.core.netting.conftest import NETTING_SETTINGS

INT64_MAX = 2**63 - 1


@st.composite
def batches(draw: st.DrawFn, max_amount: int = 10**9) -> tuple[int, int, list[ref.Row]]:
    n_participants = draw(st.integers(2, 8))
    n_currencies = draw(st.integers(1, 3))
    rows = []
    for _ in range(draw(st.integers(0, 40))):
        debtor = draw(st.integers(0, n_participants - 1))
        creditor = draw(st.integers(0, n_participants - 2))
        creditor += creditor >= debtor
        currency = draw(st.integers(0, n_currencies - 1))
        rows.append((debtor, creditor, currency, draw(st.integers(1, max_amount))))
    return n_participants, n_currencies, rows


def columns(rows: list[ref.Row]) -> tuple[np.ndarray, ...]:
    array = np.array(rows, dtype=np.int64).reshape(-1, 4)
    return array[:, 0], array[:, 1], array[:, 2], array[:, 3]


def as_dict(position: np.ndarray) -> dict[tuple[int, int], int]:
    nonzero = zip(*np.nonzero(position), strict=True)
    return {(int(p), int(c)): int(position[p, c]) for p, c in nonzero}


HANDMADE = [
    # a triangle that cancels, a pair that nets, two currencies
    [(0, 1, 0, 100), (1, 2, 0, 100), (2, 0, 0, 100)],
    [(0, 1, 0, 70), (1, 0, 0, 30), (0, 1, 1, 5)],
    [(3, 0, 0, 1), (3, 1, 0, 2), (3, 2, 0, 3), (0, 3, 1, 9)],
    [(0, 1, 0, INT64_MAX)],
    [(0, 1, 0, INT64_MAX - 1), (1, 0, 0, 1)],
]


@pytest.mark.parametrize("rows", HANDMADE)
def test_handmade_positions_match_reference(rows: list[ref.Row]) -> None:
    debtor, creditor, currency, amount = columns(rows)
    position, gross = net_positions(
        debtor, creditor, currency, amount, n_participants=4, n_currencies=2
    )
    assert as_dict(position) == ref.positions(rows)
    assert {c: int(g) for c, g in enumerate(gross) if g} == ref.gross(rows)


@NETTING_SETTINGS
@given(batches())
def test_random_positions_match_reference(batch: tuple[int, int, list[ref.Row]]) -> None:
    n_participants, n_currencies, rows = batch
    debtor, creditor, currency, amount = columns(rows)
    position, gross = net_positions(
        debtor,
        creditor,
        currency,
        amount,
        n_participants=n_participants,
        n_currencies=n_currencies,
    )
    assert as_dict(position) == ref.positions(rows)
    assert {c: int(g) for c, g in enumerate(gross) if g} == ref.gross(rows)
    assert np.all(position.sum(axis=0) == 0)  # conservation per currency


@NETTING_SETTINGS
@given(batches(), st.randoms(use_true_random=False))
def test_positions_do_not_depend_on_order(batch: tuple, rnd: object) -> None:
    n_participants, n_currencies, rows = batch
    shuffled = list(rows)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    kwargs = {"n_participants": n_participants, "n_currencies": n_currencies}
    first = net_positions(*columns(rows), **kwargs)
    second = net_positions(*columns(shuffled), **kwargs)
    assert np.array_equal(first[0], second[0])
    assert np.array_equal(first[1], second[1])


@NETTING_SETTINGS
@given(batches(max_amount=INT64_MAX // 2))
def test_overflow_is_reported_at_the_first_obligation_that_overflows(batch: tuple) -> None:
    n_participants, n_currencies, rows = batch
    expected = ref.first_overflow(rows)
    kwargs = {"n_participants": n_participants, "n_currencies": n_currencies}
    if expected is None:
        net_positions(*columns(rows), **kwargs)
        return
    with pytest.raises(ObligationInputError) as caught:
        net_positions(*columns(rows), **kwargs)
    assert caught.value.index == expected
    assert caught.value.code == "overflow"
    assert "overflows int64" in str(caught.value)


@pytest.mark.parametrize(
    ("rows", "index", "code"),
    [
        ([(0, 1, 0, 5), (1, 1, 0, 5)], 1, "self"),
        ([(0, 1, 0, 5), (0, 1, 0, 0)], 1, "amount"),
        ([(0, 1, 0, -3)], 0, "amount"),
        ([(0, 1, 0, 1), (0, 9, 0, 1)], 1, "creditor"),
        ([(0, 1, 0, 1), (0, 1, 0, 1), (7, 1, 0, 1)], 2, "debtor"),
        ([(0, 1, 3, 1)], 0, "currency"),
        ([(0, 1, 0, INT64_MAX), (1, 0, 0, 1)], 1, "overflow"),
    ],
)
def test_bad_obligations_are_named(rows: list[ref.Row], index: int, code: str) -> None:
    with pytest.raises(ObligationInputError) as caught:
        net_positions(*columns(rows), n_participants=4, n_currencies=2)
    assert (caught.value.index, caught.value.code) == (index, code)


def test_int64_index_arrays_out_of_range_are_named() -> None:
    debtor = np.array([0, 2**40], dtype=np.int64)
    with pytest.raises(ObligationInputError) as caught:
        net_positions(debtor, [1, 1], [0, 0], [1, 1], n_participants=4, n_currencies=1)
    assert caught.value.index == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"amount": np.array([1.5])},
        {"amount": np.array([2**63], dtype=np.uint64)},
        {"debtor": np.array([[0]])},
        {"debtor": np.array([0, 0])},
        {"n_participants": 0},
        {"n_currencies": 1 << 20},
    ],
)
def test_malformed_arrays_are_input_errors(kwargs: dict) -> None:
    args = {
        "debtor": np.array([0]),
        "creditor": np.array([1]),
        "currency": np.array([0]),
        "amount": np.array([1]),
        "n_participants": 2,
        "n_currencies": 1,
    } | kwargs
    with pytest.raises(InputError):
        net_positions(
            args["debtor"],
            args["creditor"],
            args["currency"],
            args["amount"],
            n_participants=args["n_participants"],
            n_currencies=args["n_currencies"],
        )


@NETTING_SETTINGS
@given(batches())
def test_bilateral_compression_and_stats_match_reference(batch: tuple) -> None:
    n_participants, n_currencies, rows = batch
    kwargs = {"n_participants": n_participants, "n_currencies": n_currencies}
    pairs = bilateral_compress(*columns(rows), **kwargs)
    got = {
        (int(c), int(d), int(k)): int(a)
        for d, k, c, a in zip(
            pairs.debtor_idx,
            pairs.creditor_idx,
            pairs.currency_idx,
            pairs.amount_minor,
            strict=True,
        )
    }
    assert got == ref.bilateral(rows)
    keys = list(zip(pairs.currency_idx, pairs.debtor_idx, pairs.creditor_idx, strict=True))
    assert keys == sorted(keys)
    stats = netting_stats(*columns(rows), **kwargs)
    gross = ref.gross(rows)
    bilateral = ref.bilateral_net(rows)
    net = {
        c: sum(v for (_, cur), v in ref.positions(rows).items() if cur == c and v > 0)
        for c in gross
    }
    assert [s.currency_idx for s in stats] == sorted(gross)
    for s in stats:
        assert s.gross_minor == gross[s.currency_idx]
        assert s.bilateral_net_minor == bilateral.get(s.currency_idx, 0)
        assert s.net_minor == net[s.currency_idx]
        assert s.net_minor <= s.bilateral_net_minor <= s.gross_minor
        assert 0.0 <= s.bilateral_efficiency <= s.netting_efficiency <= 1.0


def test_results_are_read_only() -> None:
    pairs = bilateral_compress([0], [1], [0], [5], n_participants=2, n_currencies=1)
    with pytest.raises(ValueError, match="read-only"):
        pairs.amount_minor[0] = 1
