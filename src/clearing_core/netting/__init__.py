"""Netting core: multilateral positions, liquidity limits, settlement instructions.

A pure library (no Kafka, no Faust, no I/O but the CSV reader): arrays in,
frozen results out, every result checked against its invariants. Numba
kernels do the per-obligation work; the public functions here validate,
convert and raise typed errors (``InputError`` for input,
``InvariantError`` for a broken invariant).
"""

from clearing_core.netting.api import net_currency, net_obligations, warm_up
from clearing_core.netting.instructions import settlement_instructions
from clearing_core.netting.invariants import check_currency_result
from clearing_core.netting.liquidity import resolve_gridlock
from clearing_core.netting.positions import bilateral_compress, net_positions, netting_stats
from clearing_core.netting.types import (
    HUB,
    HUB_ACCOUNT,
    NO_CAP,
    BilateralPairs,
    CurrencyResult,
    Instructions,
    NettingResult,
    NettingStats,
    ObligationInputError,
    SettlementMode,
)

__all__ = [
    "HUB",
    "HUB_ACCOUNT",
    "NO_CAP",
    "BilateralPairs",
    "CurrencyResult",
    "Instructions",
    "NettingResult",
    "NettingStats",
    "ObligationInputError",
    "SettlementMode",
    "bilateral_compress",
    "check_currency_result",
    "net_currency",
    "net_obligations",
    "net_positions",
    "netting_stats",
    "resolve_gridlock",
    "settlement_instructions",
    "warm_up",
]
