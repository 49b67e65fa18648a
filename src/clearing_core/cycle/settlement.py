"""Settling one currency's net positions over its rails (DESIGN section 6).

Positions are netted over all participants of a currency; each rail then
settles the positions of the participants on it. Whatever a rail's positions
do not net to among themselves is settled with the clearing house's account
on that rail, and the clearing house moves the difference between its own rail
accounts: those moves are the treasury lines of the cycle report. The rail
positions plus the clearing house's position on each rail sum to zero, so
each rail settles completely on its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np
import numpy.typing as npt

from clearing_core import ids
from clearing_core.encoding.records import (
    ExportFormat,
    SettlementBatch,
    SettlementInstruction,
    SettlementModel,
)
from clearing_core.errors import InputError, InvariantError
from clearing_core.money import to_rail_units_array
from clearing_core.netting.instructions import settlement_instructions

CLEARING_HOUSE = "CLEARING_HOUSE"
RailModel = Literal["hub", "direct"]
SETTLEMENT_MODEL: dict[RailModel, SettlementModel] = {"hub": "HUB", "direct": "DIRECT"}
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class RailSpec:
    """What settlement needs to know about a rail."""

    rail_id: str
    model: RailModel
    currency_exponent: int
    decimals: int


@dataclass(frozen=True)
class RailSettlement:
    """The instructions of one rail, in a deterministic order (payer, payee)."""

    rail_id: str
    payer_ids: tuple[str, ...]
    payee_ids: tuple[str, ...]
    amount_minor: I64
    amount_rail_units: I64

    def __len__(self) -> int:
        return len(self.payer_ids)

    @property
    def control_sum_minor(self) -> int:
        return int(self.amount_minor.sum())


@dataclass(frozen=True)
class TreasuryLine:
    """The clearing house moves ``amount_minor`` from its account on one rail to another."""

    from_rail: str
    to_rail: str
    amount_minor: int


def _rail_instructions(
    ids_on_rail: list[str], positions: I64, model: RailModel
) -> tuple[list[str], list[str], I64]:
    """Instructions for one rail: the clearing house absorbs the rail's imbalance."""
    imbalance = int(positions.sum())
    if model == "hub":
        payers = [
            p if v < 0 else CLEARING_HOUSE for p, v in zip(ids_on_rail, positions, strict=True)
        ]
        payees = [
            CLEARING_HOUSE if v < 0 else p for p, v in zip(ids_on_rail, positions, strict=True)
        ]
        return payers, payees, np.abs(positions)
    names = [*ids_on_rail, CLEARING_HOUSE]
    extended = np.append(positions, np.int64(-imbalance))
    made = settlement_instructions(extended, "direct")
    return (
        [names[int(i)] for i in made.payer_idx],
        [names[int(i)] for i in made.payee_idx],
        np.asarray(made.amount_minor, dtype=np.int64),
    )


def settle_by_rail(
    participant_ids: Sequence[str],
    position_minor: npt.ArrayLike,
    rail_of: Mapping[str, str],
    rails: Mapping[str, RailSpec],
) -> tuple[list[RailSettlement], list[TreasuryLine]]:
    """Per rail (sorted by rail id), the instructions settling its participants'
    positions; and the treasury lines between the clearing house's rail accounts.

    The clearing house may itself hold a position (a failed settlement carried
    over makes it a party): that position stays on its home rail, the first
    rail by id, and the treasury lines bring every other rail account to zero.
    """
    positions = np.asarray(position_minor, dtype=np.int64)
    if positions.shape != (len(participant_ids),):
        raise InputError("one position per participant is required")
    if int(positions.sum()) != 0:
        raise InvariantError(f"positions sum to {int(positions.sum())}, not zero")
    if not rails:
        raise InputError("no rail to settle on")
    members: dict[str, list[int]] = {rail_id: [] for rail_id in rails}
    house_own = 0
    for i in np.flatnonzero(positions):
        participant = participant_ids[int(i)]
        if participant == CLEARING_HOUSE:
            house_own = int(positions[i])
            continue
        rail_id = rail_of.get(participant)
        if rail_id is None or rail_id not in rails:
            raise InputError(f"{participant} has a position but no rail in this currency")
        members[rail_id].append(int(i))
    settlements, house_minor = [], {}
    for rail_id in sorted(members):
        spec = rails[rail_id]
        chosen = sorted(members[rail_id], key=lambda i: participant_ids[i])
        on_rail = positions[chosen]
        payers, payees, amount = _rail_instructions(
            [participant_ids[i] for i in chosen], on_rail, spec.model
        )
        order = sorted(range(len(payers)), key=lambda k: (payers[k], payees[k]))
        amount = amount[order] if len(order) else amount
        settlements.append(
            RailSettlement(
                rail_id=rail_id,
                payer_ids=tuple(payers[k] for k in order),
                payee_ids=tuple(payees[k] for k in order),
                amount_minor=amount,
                amount_rail_units=to_rail_units_array(
                    amount, spec.currency_exponent, spec.decimals
                ),
            )
        )
        house_minor[rail_id] = -int(on_rail.sum())
    home = min(rails)
    house_minor[home] -= house_own  # what the house keeps for itself stays at home
    treasury = treasury_lines(house_minor)
    check_settlement(participant_ids, positions, settlements, treasury, home)
    return settlements, treasury


def treasury_lines(house_minor: Mapping[str, int]) -> list[TreasuryLine]:
    """Greedy, deterministic transfers from rails where the clearing house received
    more than it paid to rails where it paid more (the balances sum to zero)."""
    surplus = sorted((r, v) for r, v in house_minor.items() if v > 0)
    deficit = sorted((r, -v) for r, v in house_minor.items() if v < 0)
    lines, i, j = [], 0, 0
    while i < len(surplus) and j < len(deficit):
        moved = min(surplus[i][1], deficit[j][1])
        lines.append(TreasuryLine(surplus[i][0], deficit[j][0], moved))
        surplus[i] = (surplus[i][0], surplus[i][1] - moved)
        deficit[j] = (deficit[j][0], deficit[j][1] - moved)
        i += surplus[i][1] == 0
        j += deficit[j][1] == 0
    if i != len(surplus) or j != len(deficit):
        raise InvariantError("the clearing house's rail balances do not sum to zero")
    return lines


def check_settlement(
    participant_ids: Sequence[str],
    positions: I64,
    settlements: Sequence[RailSettlement],
    treasury: Sequence[TreasuryLine],
    home_rail: str,
) -> None:
    """Applying every instruction to zero balances yields exactly the positions, and
    once the treasury lines are applied the clearing house's rail accounts are zero
    but on its home rail, which holds the house's own position."""
    balance: dict[str, int] = {}
    house: dict[str, int] = {}
    for rail in settlements:
        rows = zip(rail.payer_ids, rail.payee_ids, rail.amount_minor.tolist(), strict=True)
        for payer, payee, amount in rows:
            if amount <= 0 or payer == payee:
                raise InvariantError(f"{rail.rail_id}: bad instruction {payer}->{payee} {amount}")
            for who, delta in ((payer, -amount), (payee, amount)):
                if who == CLEARING_HOUSE:
                    house[rail.rail_id] = house.get(rail.rail_id, 0) + delta
                else:
                    balance[who] = balance.get(who, 0) + delta
    for line in treasury:
        house[line.from_rail] = house.get(line.from_rail, 0) - line.amount_minor
        house[line.to_rail] = house.get(line.to_rail, 0) + line.amount_minor
    expected = {participant_ids[int(i)]: int(positions[i]) for i in np.flatnonzero(positions)}
    house_own = expected.pop(CLEARING_HOUSE, 0)
    house[home_rail] = house.get(home_rail, 0) - house_own
    unbalanced = {r: v for r, v in house.items() if v != 0}
    if unbalanced:
        raise InvariantError(f"clearing house rail accounts end wrong: {unbalanced}")
    if {p: v for p, v in balance.items() if v != 0} != expected:
        raise InvariantError("instructions do not reproduce the net positions")


def batch_record(
    rail: RailSettlement,
    *,
    currency: str,
    iso_currency: str,
    cycle_seq: int,
    model: RailModel,
    export_format: ExportFormat,
    currency_exponent: int,
    rail_decimals: int,
    token_symbol: str | None,
    created_at: datetime,
    identities: Mapping[str, tuple[str | None, str | None]],
) -> SettlementBatch:
    """The ``SettlementBatch`` record of one rail; ``identities`` maps a participant
    to its (BIC, LEI)."""
    batch = ids.batch_id(rail.rail_id, currency, cycle_seq)
    instructions: list[SettlementInstruction] = []
    amounts = zip(rail.amount_minor.tolist(), rail.amount_rail_units.tolist(), strict=True)
    for seq, (payer, payee, (minor, units)) in enumerate(
        zip(rail.payer_ids, rail.payee_ids, amounts, strict=True), start=1
    ):
        instruction = ids.instruction_id(batch, seq)
        payer_bic, payer_lei = identities.get(payer, (None, None))
        payee_bic, payee_lei = identities.get(payee, (None, None))
        instructions.append({
            "instruction_id": instruction, "sequence": seq, "payer_id": payer,
            "payee_id": payee, "payer_bic": payer_bic, "payer_lei": payer_lei,
            "payee_bic": payee_bic, "payee_lei": payee_lei, "amount_minor": minor,
            "amount_rail_units": units, "end_to_end_id": ids.end_to_end_id(instruction),
            "uetr": ids.uetr(instruction),
        })  # fmt: skip
    return {
        "batch_id": batch, "rail_id": rail.rail_id, "currency": currency,
        "iso_currency": iso_currency, "cycle_seq": cycle_seq,
        "cycle_id": ids.cycle_id(currency, cycle_seq), "model": SETTLEMENT_MODEL[model],
        "export_format": export_format, "currency_exponent": currency_exponent,
        "rail_decimals": rail_decimals, "token_symbol": token_symbol,
        "created_at": created_at, "instructions": instructions,
        "instruction_count": len(instructions),
        "control_sum_minor": rail.control_sum_minor,
        "control_sum_rail_units": int(rail.amount_rail_units.sum()),
    }  # fmt: skip
