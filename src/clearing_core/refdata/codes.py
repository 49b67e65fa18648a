"""Identifier formats: participant/contract ids, currency codes, LEI and BIC.

Why here: the loader, the scenario generator and the tests must agree on one
definition; the LEI check digits are computed, not trusted, so a typo in the
reference data is caught at load time rather than in a bank's rejection.
"""

from __future__ import annotations

import re

ID_LENGTH_MAX = 64
# Ids travel as Kafka keys, in carry keys ("ppa:<contract>") and in file names:
# no spaces, no colons, no slashes.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# A rail id is also the suffix of the topic clearing.settlement.batches.<rail_id>.
RAIL_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
CURRENCY_PATTERN = re.compile(r"[A-Z]{3}")
COUNTRY_PATTERN = re.compile(r"[A-Z]{2}")
TOKEN_SYMBOL_PATTERN = re.compile(r"[A-Z0-9]{1,11}")
# ISO 9362: institution (4 letters), country (2 letters), location (2), branch (3, optional).
BIC_PATTERN = re.compile(r"[A-Z]{4}[A-Z]{2}[A-Z0-9]{2}(?:[A-Z0-9]{3})?")
LEI_PATTERN = re.compile(r"[A-Z0-9]{18}[0-9]{2}")


def _mod97(text: str) -> int:
    """ISO 7064 MOD 97-10 remainder of an alphanumeric string (A=10 ... Z=35)."""
    remainder = 0
    for char in text:
        value = int(char, 36)
        remainder = (remainder * (100 if value > 9 else 10) + value) % 97
    return remainder


def lei_check_digits(base18: str) -> str:
    """The two ISO 17442 check digits that complete an 18-character LEI base."""
    if len(base18) != 18 or not base18.isalnum() or base18.upper() != base18:
        raise ValueError(f"LEI base must be 18 upper-case alphanumerics, got {base18!r}")
    return f"{98 - _mod97(base18 + '00'):02d}"


def lei_is_valid(lei: str) -> bool:
    """Format and MOD 97-10 check of a 20-character LEI."""
    return LEI_PATTERN.fullmatch(lei) is not None and _mod97(lei) == 1


def bic_is_valid(bic: str) -> bool:
    return BIC_PATTERN.fullmatch(bic) is not None


def eip55(address: str) -> str:
    """The EIP-55 checksummed spelling of a 20-byte hex address (0x + 40 hex digits)."""
    from eth_utils.address import to_checksum_address

    return str(to_checksum_address(address))
