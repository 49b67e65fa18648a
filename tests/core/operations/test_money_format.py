"""Amounts in currency units: the rule the dashboard's page follows too."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clearing_core.operations.money_format import format_amount, format_minor


@pytest.mark.parametrize(
    ("amount", "exponent", "text"),
    [
        (129_439_044, 2, "1,294,390.44"),  # the CNH gross
        (413_398_340_000, 6, "413,398.340000"),  # a CNHT control sum in rail units
        (0, 2, "0.00"),
        (5, 2, "0.05"),
        (-5, 2, "-0.05"),
        (-123_456_789, 2, "-1,234,567.89"),
        (1_000, 0, "1,000"),
        (9_223_372_036_854_775_807, 2, "92,233,720,368,547,758.07"),  # int64 max, exact
        (1, 18, "0.000000000000000001"),
    ],
)
def test_format_minor(amount: int, exponent: int, text: str) -> None:
    assert format_minor(amount, exponent) == text


def test_format_amount_names_the_unit() -> None:
    assert format_amount(129_439_044, 2, "CNH") == "1,294,390.44 CNH"


def test_an_impossible_exponent_is_refused() -> None:
    with pytest.raises(ValueError, match="exponent"):
        format_minor(1, 19)


@given(st.integers(-(2**63), 2**63 - 1), st.integers(0, 18))
def test_the_text_reads_back_as_the_same_minor_units(amount: int, exponent: int) -> None:
    text = format_minor(amount, exponent)
    digits = text.replace(",", "").replace(".", "")
    assert int(digits) == amount
    assert len(text.rpartition(".")[2]) == exponent or exponent == 0
