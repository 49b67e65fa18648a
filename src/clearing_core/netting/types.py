"""Result types, limits and errors of the netting core.

Why frozen dataclasses over read-only arrays: a cycle's result is evidence
(it is checked, emitted and replayed), so nothing downstream may edit it in
place; arrays keep the per-currency path free of per-obligation objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from clearing_core.errors import InputError

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
Mask = npt.NDArray[np.bool_]
ArrayT = TypeVar("ArrayT", bound=npt.NDArray[Any])

SettlementMode = Literal["hub", "direct"]
SETTLEMENT_MODES: Final[tuple[SettlementMode, ...]] = ("hub", "direct")

NO_CAP: Final = -1
"""Cap sentinel: the participant has no net debit cap in that currency."""

HUB: Final = -1
"""Payer or payee index of the clearing-house account in hub instructions."""

HUB_ACCOUNT: Final = "CLEARING_HOUSE"

INT64_MAX: Final = int(np.iinfo(np.int64).max)

# Limits on everything: beyond these the input is a mistake or an attack.
PARTICIPANTS_MAX: Final = 1 << 24
CURRENCIES_MAX: Final = 1 << 12
OBLIGATIONS_MAX: Final = 1 << 30


class ObligationInputError(InputError):
    """An obligation that cannot be netted, with its position in the input arrays,
    so a file reader can name the line."""

    def __init__(self, index: int, reason: str, code: str = "invalid") -> None:
        super().__init__(f"obligation {index}: {reason}")
        self.index = index
        self.reason = reason
        self.code = code


def frozen_array(values: ArrayT) -> ArrayT:
    """Mark an array read-only so a frozen result is frozen all the way down."""
    values.flags.writeable = False
    return values


@dataclass(frozen=True)
class Instructions:
    """Payments that settle a currency's positions; ``HUB`` marks the clearing house."""

    payer_idx: I64
    payee_idx: I64
    amount_minor: I64

    def __len__(self) -> int:
        return int(self.amount_minor.shape[0])


@dataclass(frozen=True)
class CurrencyResult:
    """Everything one currency's netting produced, all in minor units.

    ``position_minor`` is receivable minus payable per participant over the
    settled obligations; ``deferred_idx`` are positions in the input arrays
    (ascending) of the obligations that roll into the next cycle.
    """

    currency_idx: int
    mode: SettlementMode
    position_minor: I64
    instructions: Instructions
    deferred_idx: I64
    gross_minor: int
    net_minor: int
    settled_gross_minor: int
    deferred_minor: int

    @property
    def netting_efficiency(self) -> float:
        """1 - net/gross over the settled obligations (0 when nothing settled)."""
        if self.settled_gross_minor == 0:
            return 0.0
        return 1.0 - self.net_minor / self.settled_gross_minor

    @property
    def instruction_count(self) -> int:
        return len(self.instructions)

    @property
    def deferred_count(self) -> int:
        return int(self.deferred_idx.shape[0])


@dataclass(frozen=True)
class NettingResult:
    """Per-currency results, ordered by currency index; currencies with no
    obligation are left out."""

    currencies: tuple[CurrencyResult, ...]


@dataclass(frozen=True)
class BilateralPairs:
    """Obligations summed per ordered (debtor, creditor, currency), sorted by
    currency, debtor, creditor."""

    debtor_idx: I64
    creditor_idx: I64
    currency_idx: I64
    amount_minor: I64


@dataclass(frozen=True)
class NettingStats:
    """How much netting saves in one currency: gross, after bilateral offsetting
    and after multilateral netting."""

    currency_idx: int
    obligation_count: int
    gross_minor: int
    bilateral_net_minor: int
    net_minor: int

    @property
    def netting_efficiency(self) -> float:
        return 0.0 if self.gross_minor == 0 else 1.0 - self.net_minor / self.gross_minor

    @property
    def bilateral_efficiency(self) -> float:
        if self.gross_minor == 0:
            return 0.0
        return 1.0 - self.bilateral_net_minor / self.gross_minor
