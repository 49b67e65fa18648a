"""Checked int64 arithmetic and exact rail-unit conversion."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clearing_core.errors import ClearingError, InputError
from clearing_core.money import (
    INT64_MAX,
    INT64_MIN,
    MoneyConfigError,
    MoneyOverflowError,
    checked_add,
    checked_mul,
    checked_sum,
    checked_sum_array,
    format_units,
    iso_4217_code,
    rail_scale,
    to_rail_units,
    to_rail_units_array,
)
from tests.core.fixtures import base_refdata

int64s = st.integers(INT64_MIN, INT64_MAX)


def test_overflow_error_is_typed() -> None:
    error = MoneyOverflowError("x", 3)
    assert isinstance(error, ClearingError)
    assert error.reason_code == "AMOUNT_OVERFLOW"
    assert error.index == 3


@given(int64s, int64s)
def test_checked_add_is_exact_or_raises(a: int, b: int) -> None:
    if INT64_MIN <= a + b <= INT64_MAX:
        assert checked_add(a, b) == a + b
    else:
        with pytest.raises(MoneyOverflowError):
            checked_add(a, b)


@given(int64s, int64s)
def test_checked_mul_is_exact_or_raises(a: int, b: int) -> None:
    if INT64_MIN <= a * b <= INT64_MAX:
        assert checked_mul(a, b) == a * b
    else:
        with pytest.raises(MoneyOverflowError):
            checked_mul(a, b)


def test_edges_of_int64() -> None:
    assert checked_add(INT64_MAX, 0) == INT64_MAX
    assert checked_add(INT64_MIN, 0) == INT64_MIN
    with pytest.raises(MoneyOverflowError):
        checked_add(INT64_MAX, 1)
    with pytest.raises(MoneyOverflowError):
        checked_add(INT64_MIN, -1)
    with pytest.raises(MoneyOverflowError):
        checked_mul(INT64_MIN, -1)
    assert checked_mul(np.int64(3), np.int64(4)) == 12


@pytest.mark.parametrize("bad", [1.5, True, "3", None])
def test_non_integers_are_refused(bad: object) -> None:
    with pytest.raises(InputError, match="integer"):
        checked_add(1, bad)


def test_checked_sum_catches_running_overflow() -> None:
    assert checked_sum([1, 2, 3]) == 6
    with pytest.raises(MoneyOverflowError) as caught:
        checked_sum([INT64_MAX, 1, -5])
    assert caught.value.index == 1


def test_array_sum_where_numpy_wraps() -> None:
    values = np.array([INT64_MAX, 1], dtype=np.int64)
    assert int(values.sum()) == INT64_MIN  # numpy wraps silently
    with pytest.raises(MoneyOverflowError) as caught:
        checked_sum_array(values)
    assert caught.value.index == 1
    with pytest.raises(MoneyOverflowError) as caught:
        checked_sum_array(np.array([-5, INT64_MIN, 7], dtype=np.int64))
    assert caught.value.index == 1
    assert checked_sum_array(np.array([], dtype=np.int64)) == 0
    assert checked_sum_array([INT64_MAX, -1, 1]) == INT64_MAX


@given(st.lists(st.integers(-(2**62), 2**62), max_size=50))
def test_array_sum_agrees_with_python(values: list[int]) -> None:
    running, fits = 0, True
    for v in values:
        running += v
        fits = fits and INT64_MIN <= running <= INT64_MAX
    if fits:
        assert checked_sum_array(np.array(values, dtype=np.int64)) == sum(values)
    else:
        with pytest.raises(MoneyOverflowError):
            checked_sum_array(np.array(values, dtype=np.int64))


def test_array_input_checks() -> None:
    with pytest.raises(InputError, match="expected integers"):
        checked_sum_array(np.array([1.0, 2.0]))
    with pytest.raises(InputError, match="1-D"):
        checked_sum_array(np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(MoneyOverflowError, match="above int64"):
        checked_sum_array(np.array([2**63], dtype=np.uint64))


def test_rail_units_scale_up_exactly() -> None:
    assert rail_scale(2, 6) == 10_000
    assert to_rail_units(12_345, 2, 6) == 123_450_000  # 123.45 CNH -> 123.450000 CNHT
    assert to_rail_units(12_345, 2, 2) == 12_345
    assert to_rail_units(-7, 0, 18) == -7 * 10**18
    with pytest.raises(MoneyConfigError, match="would lose value"):
        to_rail_units(1, 2, 1)
    with pytest.raises(MoneyConfigError, match="decimals 19"):
        rail_scale(0, 19)
    with pytest.raises(MoneyOverflowError):
        to_rail_units(INT64_MAX // 10_000 + 1, 2, 6)
    assert to_rail_units(INT64_MAX // 10_000, 2, 6) == INT64_MAX // 10_000 * 10_000


@given(st.lists(int64s, max_size=30), st.integers(0, 4), st.integers(0, 8))
def test_vector_conversion_matches_scalar(amounts: list[int], exponent: int, extra: int) -> None:
    decimals = exponent + extra
    expected: list[int] = []
    first_bad = None
    for i, a in enumerate(amounts):
        try:
            expected.append(to_rail_units(a, exponent, decimals))
        except MoneyOverflowError:
            first_bad = i
            break
    if first_bad is None:
        got = to_rail_units_array(np.array(amounts, dtype=np.int64), exponent, decimals)
        assert got.tolist() == expected
    else:
        with pytest.raises(MoneyOverflowError) as caught:
            to_rail_units_array(np.array(amounts, dtype=np.int64), exponent, decimals)
        assert caught.value.index == first_bad


def test_format_units_is_exact_text() -> None:
    assert format_units(12_345, 2) == "123.45"
    assert format_units(5, 2) == "0.05"
    assert format_units(-5, 2) == "-0.05"
    assert format_units(123_450_000, 6) == "123.450000"
    assert format_units(INT64_MAX, 2) == "92233720368547758.07"
    assert format_units(7, 0) == "7"


def test_iso_code_comes_from_the_currency_record() -> None:
    currencies = base_refdata().currencies
    assert iso_4217_code("CNH", currencies) == "CNY"
    assert iso_4217_code("USD", currencies) == "USD"
    with pytest.raises(InputError, match="unknown currency 'EUR'"):
        iso_4217_code("EUR", currencies)
