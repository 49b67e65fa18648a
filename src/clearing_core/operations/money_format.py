"""Amounts as people read them: integer minor units shown in currency (or rail) units.

Why here: the dashboard's page formats amounts in JavaScript (BigInt string arithmetic),
and its browser test checks every figure against this formatter, so the two must agree
on one rule. Pure integer and string work: a float would round large amounts.
"""

from __future__ import annotations

EXPONENT_MAX = 18  # rails have at most 18 decimals (refdata.models.Rail)


def format_minor(amount: int, exponent: int) -> str:
    """``amount`` minor units as a decimal with ``exponent`` digits after the point and
    thousands separators: ``format_minor(129_439_044, 2) == "1,294,390.44"``."""
    if not 0 <= exponent <= EXPONENT_MAX:
        raise ValueError(f"exponent {exponent} is outside 0..{EXPONENT_MAX}")
    sign = "-" if amount < 0 else ""
    digits = str(abs(int(amount))).rjust(exponent + 1, "0")
    whole, fraction = digits[: len(digits) - exponent], digits[len(digits) - exponent :]
    grouped = f"{int(whole):,}"
    return sign + grouped + ("." + fraction if exponent else "")


def format_amount(amount: int, exponent: int, unit: str) -> str:
    """``format_minor`` followed by the unit: ``"1,294,390.44 CNH"``."""
    return f"{format_minor(amount, exponent)} {unit}"
