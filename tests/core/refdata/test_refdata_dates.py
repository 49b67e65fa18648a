"""Dates in reference data: a date written as text (``"2024-01-01"``, what JSON and
YAML tools emit) is the same date as the unquoted YAML one, and a date that does
not exist is one line naming the field, quoted or not."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearing_core.refdata import RefdataError, dump_refdata_yaml, load_refdata
from tests.core.fixtures import base_document, find

JAN_1_2024_MS = 1_704_067_200_000
VALID_TO_MS = 2_208_988_800_000  # 2040-01-01T00:00:00Z, the base document's valid_to


def _with_dates(doc: dict[str, Any], valid_from: Any, valid_to: Any) -> dict[str, Any]:
    contract = find(doc, "contracts", "PPA-0001")
    contract["valid_from"], contract["valid_to"] = valid_from, valid_to
    return doc


def _yaml(valid_from: str, valid_to: str = "2040-01-01") -> str:
    """The base document as YAML text with the two dates written as given."""
    text = dump_refdata_yaml(_with_dates(base_document(), "FROM", "TO"))
    assert "valid_from: FROM" in text
    assert "valid_to: TO" in text
    return text.replace("valid_from: FROM", f"valid_from: {valid_from}").replace(
        "valid_to: TO", f"valid_to: {valid_to}"
    )


def _json(valid_from: str, valid_to: str = "2040-01-01") -> str:
    return json.dumps(_with_dates(base_document(), valid_from, valid_to), indent=1)


@pytest.mark.parametrize(
    "text",
    [
        _yaml("'2024-01-01'", "'2040-01-01'"),
        _yaml('"2024-01-01"', '"2040-01-01"'),
        _json("2024-01-01"),
    ],
    ids=["yaml-single-quoted", "yaml-double-quoted", "json"],
)
def test_a_quoted_date_is_the_unquoted_yaml_date(text: str) -> None:
    unquoted = load_refdata(_yaml("2024-01-01", "2040-01-01"))
    quoted = load_refdata(text)
    assert quoted.contracts["PPA-0001"].valid_from == JAN_1_2024_MS
    assert quoted.contracts["PPA-0001"].valid_to == VALID_TO_MS
    assert quoted.digest == unquoted.digest


@settings(max_examples=40, deadline=None)
@given(st.dates(min_value=date(1970, 1, 1), max_value=date(2039, 12, 31)))
def test_any_date_reads_the_same_quoted_unquoted_and_in_json(day: date) -> None:
    text = day.isoformat()
    expected_ms = (day - date(1970, 1, 1)).days * 86_400_000
    for source in (_yaml(text), _yaml(f"'{text}'"), _json(text)):
        assert load_refdata(source).contracts["PPA-0001"].valid_from == expected_ms


@pytest.mark.parametrize(
    ("written", "reason"),
    [
        ("2024-13-01", "month must be in 1..12"),
        ("'2024-13-01'", "month must be in 1..12"),
        ('"2024-02-30"', "day is out of range for month"),
        ("2024-02-30", "day is out of range for month"),
    ],
)
def test_a_date_that_does_not_exist_is_one_line_naming_the_field(written: str, reason: str) -> None:
    with pytest.raises(RefdataError) as caught:
        load_refdata(_yaml(written))
    day = written.strip("'\"")
    assert str(caught.value) == (
        f"refdata: contracts[PPA-0001].valid_from: '{day}' is not a valid date: {reason}"
    )


def test_a_json_date_that_does_not_exist_names_the_field() -> None:
    with pytest.raises(RefdataError, match=r"^refdata: contracts\[PPA-0001\]\.valid_to: "):
        load_refdata(_json("2024-01-01", "2040-02-30"))
