"""Every pacs.009 the exports write is valid against the official XSD, shipped with
the package; an invalid document is refused with the element named."""

from __future__ import annotations

import hashlib
import re

import pytest

from clearing_core.exports import pacs009
from clearing_core.exports.documents import ExportError, Identity
from clearing_core.exports.iso_schemas import MESSAGES, schema, schema_dir, validate
from tests.conftest import REPO
from tests.core.exports.test_exports import LEI_ONLY, OPERATOR_BIC, make_batch

# SHA-256 of the official files in ../shared/iso20022 (ISO's Standards Editor output)
OFFICIAL = {
    "camt.053.001.08": "338e9cb0c9989b5181802a7b773eece070d6815fc9d6483ac0579117bc24ccba",
    "camt.054.001.08": "13d220337d47e22cf25788807c136794a76955791df612c6947277272d440da6",
    "pacs.002.001.10": "d14da6304db5178b1afc7d8ed6cc6073e6e1a143fc79d9ba66d3246d4a654e90",
    "pacs.009.001.08": "2f695939eb9be156bf2f14a26fbeb0f3bead73037fb03fd219ad14ceb19905ec",
}
SHARED = REPO.parent / "shared" / "iso20022"


def valid_document() -> bytes:
    batch = make_batch(
        "cnh-cips", "CNH", "CNY", 2, 2,
        [("DC-SHENZHEN-01", "CLEARING_HOUSE", 400_000_05, "ABCDCNBJ", LEI_ONLY),
         ("CLEARING_HOUSE", "SOLAR-QINGHAI-07", 400_000_05, None, None)],
        payee_ids={"SOLAR-QINGHAI-07": ("ABCDCNBJXXX", None)},
    )  # fmt: skip
    return pacs009.xml(batch, clearing_house=Identity(bic=OPERATOR_BIC))


@pytest.mark.parametrize("message", MESSAGES)
def test_the_shipped_schemas_are_the_official_files(message: str) -> None:
    data = (schema_dir() / f"{message}.xsd").read_bytes()
    assert hashlib.sha256(data).hexdigest() == OFFICIAL[message]
    if SHARED.is_dir():  # beside the checkout, as CI has it: the same bytes
        assert data == (SHARED / f"{message}.xsd").read_bytes()
    assert schema(message).target_namespace == f"urn:iso:std:iso:20022:tech:xsd:{message}"


def test_every_written_document_is_valid_against_the_xsd() -> None:
    data = valid_document()
    validate(data, "pacs.009.001.08")
    assert schema("pacs.009.001.08").is_valid(data)


def test_an_invalid_document_is_refused_naming_the_element() -> None:
    broken = valid_document().replace(b"<BICFI>ABCDCNBJ</BICFI>", b"<BICFI>abcd-cnbj</BICFI>", 1)
    with pytest.raises(ExportError, match=re.escape("pacs.009.001.08 invalid at /Document/")) as e:
        validate(broken, "pacs.009.001.08")
    assert "BICFI" in str(e.value)
    assert "\n" not in str(e.value)
    with pytest.raises(ExportError, match="BICFI"):  # a document read back is checked too
        pacs009.parse(broken)


def test_an_unknown_message_has_no_schema() -> None:
    with pytest.raises(ExportError, match=re.escape("no schema for 'pacs.008.001.08'")):
        schema("pacs.008.001.08")
