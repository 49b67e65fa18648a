"""Identifiers are deterministic, well-formed and collision-resistant."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clearing_core.errors import InputError
from clearing_core.ids import (
    batch_id,
    end_to_end_id,
    instruction_id,
    obligation_id,
    source_digest,
    uetr,
)

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_obligation_ids() -> None:
    assert obligation_id("METER", ["e1"]) == "m:e1"
    aggregate = obligation_id("COMPUTE", ["b", "a", "c"])
    assert aggregate == obligation_id("COMPUTE", ["c", "a", "b"])
    assert aggregate.startswith("c:agg:")
    assert aggregate != obligation_id("COMPUTE", ["a", "b"])
    with pytest.raises(InputError):
        obligation_id("BARTER", ["x"])
    with pytest.raises(InputError):
        obligation_id("METER", [])


def test_batch_and_instruction_ids() -> None:
    batch = batch_id("usd-swift", "USD", 12)
    assert batch == "usd-swift-USD-00000012"
    assert instruction_id(batch, 3) == "usd-swift-USD-00000012-000003"


@given(st.text(min_size=1, max_size=120))
def test_uetr_and_end_to_end_id_are_stable_and_valid(instruction: str) -> None:
    assert UUID4.match(uetr(instruction))
    assert uetr(instruction) == uetr(instruction)
    e2e = end_to_end_id(instruction)
    assert 1 <= len(e2e) <= 35
    assert e2e == end_to_end_id(instruction)


def test_digest_is_order_free() -> None:
    assert source_digest(["x", "y"]) == source_digest(["y", "x"])
    assert len(source_digest(["x"])) == 64
