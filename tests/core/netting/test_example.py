"""The worked example of DESIGN §7 (``../shared/examples/net``): positions,
gross, net, settled gross and the deferred set must match exactly; in direct
mode any pairing that settles the positions with at most n-1 transfers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clearing_core.netting.report import net_csv_files, report_dict
from tests.core.netting import reference as ref

CASES = [
    ("hub", None, "expected-hub.json"),
    ("direct", None, "expected-direct.json"),
    ("hub", "limits.csv", "expected-hub-limits.json"),
]


def check_against(got: dict, expected: dict, mode: str) -> None:
    assert set(got["currencies"]) == set(expected["currencies"])
    for code, want in expected["currencies"].items():
        have = got["currencies"][code]
        assert have["positions"] == want["positions"]
        for key in ("gross_minor", "net_minor", "settled_gross_minor"):
            assert have[key] == want[key], (code, key)
        assert sorted(have["deferred"]) == sorted(want["deferred"])
        transfers = [(i["payer"], i["payee"], i["amount_minor"]) for i in have["instructions"]]
        balances = ref.apply(transfers)
        assert balances.pop("CLEARING_HOUSE", 0) == 0
        assert balances == have["positions"]
        if mode == "hub":
            key = lambda i: (i["payer"], i["payee"], i["amount_minor"])  # noqa: E731
            assert sorted(have["instructions"], key=key) == sorted(want["instructions"], key=key)
        else:
            assert len(transfers) <= len(have["positions"]) - 1


@pytest.mark.parametrize(("mode", "limits", "expected"), CASES)
def test_worked_example(examples_dir: Path, mode: str, limits: str | None, expected: str) -> None:
    netting = net_csv_files(
        examples_dir / "obligations.csv", examples_dir / limits if limits else None, mode
    )
    want = json.loads((examples_dir / expected).read_text())
    check_against(report_dict(netting), want, mode)


def test_direct_mode_with_the_limits(examples_dir: Path) -> None:
    netting = net_csv_files(examples_dir / "obligations.csv", examples_dir / "limits.csv", "direct")
    want = json.loads((examples_dir / "expected-hub-limits.json").read_text())
    check_against(report_dict(netting), want, "direct")
