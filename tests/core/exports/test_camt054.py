"""camt.054.001.08 out (issue 18, item 4): a participant's statements as its debit and
credit notification, valid against the official XSD and read back strictly."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from clearing_core.cycle.ledger import CurrencyLedger
from clearing_core.cycle.statements import fold
from clearing_core.encoding.records import ParticipantStatement
from clearing_core.exports import camt054
from clearing_core.exports.documents import ExportError
from tests.core.cycle.test_cycle import T0, context, marker, obligation

AT = datetime(2026, 12, 7, 10, tzinfo=UTC)


def solar_statements() -> list[ParticipantStatement]:
    ledger = CurrencyLedger("CNH")
    ledger.add(obligation("a", "DC", "SOLAR", 1_250_000))
    ledger.add(obligation("b", "GPU", "SOLAR", 640_001))
    first = ledger.close(marker(1), T0, context())
    ledger.add(obligation("c", "SOLAR", "LEASE", 99))
    second = ledger.close(marker(2), T0, context())
    return [s for o in (first, second) for s in o.statements if s["participant_id"] == "SOLAR"]


def test_one_notification_per_cycle_and_an_entry_per_instruction() -> None:
    statements = solar_statements()
    (line_1,) = statements[0]["instructions"]
    (line_2,) = statements[1]["instructions"]
    statuses = {line_1["instruction_id"]: ("SETTLED", None),
                line_2["instruction_id"]: ("FAILED", "AM04")}  # fmt: skip
    data = camt054.xml("SOLAR", fold(statements, statuses),
                       created_at=AT)  # fmt: skip
    document = camt054.parse(data).bk_to_cstmr_dbt_cdt_ntfctn
    assert [n.id for n in document.ntfctn] == ["CNH-00000001/SOLAR", "CNH-00000002/SOLAR"]
    first, second = (n.ntry for n in document.ntfctn)
    assert [(e.amt.value, e.amt.ccy, e.cdt_dbt_ind.value, e.sts.cd) for e in first] == [
        (Decimal("18900.01"), "CNY", "CRDT", "BOOK")]  # fmt: skip
    assert [(e.amt.value, e.cdt_dbt_ind.value, e.sts.cd) for e in second] == [
        (Decimal("0.99"), "DBIT", "INFO")]  # fmt: skip
    assert second[0].addtl_ntry_inf == "failed (AM04): carried into the next cycle"
    assert document.ntfctn[0].acct.ccy == "CNY"


def test_an_unanswered_instruction_is_pending() -> None:
    data = camt054.xml("SOLAR", fold(solar_statements()[:1], {}),
                       created_at=AT)  # fmt: skip
    (entry,) = camt054.parse(data).bk_to_cstmr_dbt_cdt_ntfctn.ntfctn[0].ntry
    assert entry.sts.cd == "PDNG"


def test_a_participant_id_longer_than_an_account_id_is_an_error() -> None:
    with pytest.raises(ExportError, match="longer than an account id"):
        camt054.xml("P" * 35, fold(solar_statements(), {}), created_at=AT)
