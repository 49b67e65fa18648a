"""Settling a currency over several rails: each rail settles exactly, the clearing
house's rail accounts are balanced by treasury lines, rail units are exact."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearing_core.cycle.settlement import (
    CLEARING_HOUSE,
    RailSpec,
    batch_record,
    settle_by_rail,
    treasury_lines,
)
from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.errors import InputError, InvariantError

RAILS = {
    "cnh-cips": RailSpec("cnh-cips", "hub", currency_exponent=2, decimals=2),
    "cnh-stable": RailSpec("cnh-stable", "direct", currency_exponent=2, decimals=6),
}


def test_two_rails_with_imbalance_and_treasury() -> None:
    ids = ["A", "B", "C", "D", "E"]
    positions = np.array([-500, 200, -100, 300, 100], dtype=np.int64)
    rail_of = {"A": "cnh-cips", "B": "cnh-cips", "C": "cnh-stable", "D": "cnh-stable",
               "E": "cnh-stable"}  # fmt: skip
    settlements, treasury = settle_by_rail(ids, positions, rail_of, RAILS)
    cips, stable = settlements
    assert cips.rail_id == "cnh-cips"
    assert list(zip(cips.payer_ids, cips.payee_ids, cips.amount_minor.tolist(), strict=True)) == [
        ("A", CLEARING_HOUSE, 500), (CLEARING_HOUSE, "B", 200),
    ]  # fmt: skip
    # stable rail: C owes 100, D and E receive 400 -> the house pays 300 into the rail
    flows = list(zip(stable.payer_ids, stable.payee_ids, stable.amount_minor.tolist(), strict=True))
    assert sum(a for p, _, a in flows if p == CLEARING_HOUSE) == 300
    assert len(flows) <= 3
    assert stable.amount_rail_units.tolist() == [a * 10_000 for _, _, a in flows]
    assert [(t.from_rail, t.to_rail, t.amount_minor) for t in treasury] == [
        ("cnh-cips", "cnh-stable", 300)
    ]


def test_no_rail_or_nonzero_sum_is_an_error() -> None:
    with pytest.raises(InputError, match="B has a position but no rail"):
        settle_by_rail(["A", "B"], [-5, 5], {"A": "cnh-cips"}, RAILS)
    with pytest.raises(InvariantError):
        settle_by_rail(["A", "B"], [-5, 6], {"A": "cnh-cips", "B": "cnh-cips"}, RAILS)


def test_treasury_lines_are_deterministic_and_balanced() -> None:
    lines = treasury_lines({"r3": -70, "r1": 50, "r2": 30, "r4": -10})
    assert [(t.from_rail, t.to_rail, t.amount_minor) for t in lines] == [
        ("r1", "r3", 50), ("r2", "r3", 20), ("r2", "r4", 10),
    ]  # fmt: skip
    with pytest.raises(InvariantError):
        treasury_lines({"r1": 5})


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(-10**12, 10**12), st.sampled_from(sorted(RAILS))),
             min_size=1, max_size=40)
)  # fmt: skip
def test_random_positions_settle_exactly(rows: list[tuple[int, str]]) -> None:
    values = [v for v, _ in rows]
    values.append(-sum(values))
    rails = [r for _, r in rows] + ["cnh-cips"]
    ids = [f"P{i:03d}" for i in range(len(values))]
    settlements, _ = settle_by_rail(ids, values, dict(zip(ids, rails, strict=True)), RAILS)
    for rail in settlements:
        members = sum(1 for p, r in zip(ids, rails, strict=True) if r == rail.rail_id
                      and values[ids.index(p)] != 0)  # fmt: skip
        if RAILS[rail.rail_id].model == "hub":
            assert len(rail) == members
        else:
            assert len(rail) <= members  # members + the house - 1


def test_batch_record_encodes(codec: SingleObjectCodec) -> None:
    ids = ["A", "B"]
    settlements, _ = settle_by_rail(ids, [-125, 125], {"A": "cnh-stable", "B": "cnh-stable"},
                                    RAILS)  # fmt: skip
    record = batch_record(
        settlements[1], currency="CNH", iso_currency="CNY", cycle_seq=7, model="direct",
        export_format="TOKEN_BATCH", currency_exponent=2, rail_decimals=6,
        token_symbol="CNHT", created_at=datetime(2026, 11, 24, tzinfo=UTC),
        identities={"A": ("BANKCNSHXXX", None)},
    )  # fmt: skip
    assert record["batch_id"] == "cnh-stable-CNH-00000007"
    (instruction,) = record["instructions"]
    assert instruction["instruction_id"] == "cnh-stable-CNH-00000007-000001"
    assert instruction["amount_rail_units"] == 1_250_000
    assert instruction["payer_bic"] == "BANKCNSHXXX"
    assert codec.decode(codec.encode("SettlementBatch", record)).record == record


def test_the_clearing_house_as_a_party_keeps_its_position_on_its_home_rail() -> None:
    # a failed hub payment carried over: A owes the house 700, B is owed 300 by A
    ids = ["A", "B", CLEARING_HOUSE]
    positions = np.array([-1_000, 300, 700], dtype=np.int64)
    rail_of = {"A": "cnh-stable", "B": "cnh-stable"}
    settlements, treasury = settle_by_rail(ids, positions, rail_of, RAILS)
    stable = settlements[1]
    flows = list(zip(stable.payer_ids, stable.payee_ids, stable.amount_minor.tolist(), strict=True))
    assert sorted(flows) == [("A", "B", 300), ("A", CLEARING_HOUSE, 700)]
    assert [(t.from_rail, t.to_rail, t.amount_minor) for t in treasury] == [
        ("cnh-stable", "cnh-cips", 700)
    ]
