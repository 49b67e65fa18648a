"""The examples in docs/refdata.md and docs/pricing.md stay true."""

from __future__ import annotations

import re

from clearing_core.refdata import load_refdata
from tests.conftest import REPO

DOCS = REPO / "docs"


def _blocks(name: str, language: str) -> list[str]:
    text = (DOCS / name).read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def test_refdata_example_loads() -> None:
    example = _blocks("refdata.md", "yaml")[0]
    ref = load_refdata(example)
    assert ref.version == "example-2025.06"
    assert ref.cycle_seconds_for("CNH") == 30
    assert ref.cap_minor("DC-SHENZHEN-01", "CNH") == 5_000_000
    assert ref.contracts["PPA-CN-0001"].valid_from == 1_704_038_400_000  # +08:00 midnight
    assert not ref.participants["LESSOR-HK-01"].active


def test_pricing_example_runs() -> None:
    (example,) = _blocks("pricing.md", "python")
    exec(compile(example, "docs/pricing.md", "exec"), {})
