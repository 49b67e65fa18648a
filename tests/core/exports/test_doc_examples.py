"""The example documents of docs/bank-exports.md (written by the commands in a real
run) stay valid against their official XSDs, and the project still reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from clearing_core.exports import camt054, pacs002, pacs009
from tests.conftest import REPO

EXAMPLES = REPO / "docs/examples/bank"
READERS = {"pacs009": pacs009.parse, "pacs002": pacs002.parse, "camt054": camt054.parse}


def kind(path: Path) -> str:
    if path.name.startswith("GZBK-STS-"):
        return "pacs002"  # a bank's own report
    return path.name.rsplit(".", 2)[-2]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.xml")), ids=lambda p: p.name)
def test_an_example_document_is_valid_and_reads_back(path: Path) -> None:
    assert READERS[kind(path)](path.read_bytes()) is not None


def test_every_kind_has_an_example() -> None:
    assert {kind(p) for p in EXAMPLES.glob("*.xml")} == set(READERS)
