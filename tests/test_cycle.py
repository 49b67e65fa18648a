"""A currency's cycles: duplicates dropped, caps defer and carry, remainders settle
once whole, per-rail batches that encode deterministically."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from clearing_core.codec import SingleObjectCodec
from clearing_core.cycle import CurrencyLedger, CycleContext, RailInfo
from clearing_core.settlement import RailSpec

T0 = datetime(2026, 11, 24, 9, tzinfo=UTC)


def context(caps: dict[str, int] | None = None) -> CycleContext:
    rails = {
        "cnh-cips": RailInfo(RailSpec("cnh-cips", "hub", 2, 2), "ISO20022", None),
        "cnh-stable": RailInfo(RailSpec("cnh-stable", "direct", 2, 6), "TOKEN_BATCH", "CNHT"),
    }
    rail_of = {"DC": "cnh-cips", "SOLAR": "cnh-stable", "LEASE": "cnh-stable", "GPU": "cnh-cips"}
    return CycleContext(
        currency="CNH", iso_currency="CNY", currency_exponent=2, rails=rails, rail_of=rail_of,
        cap_minor=caps or {}, identities={"DC": ("DCBKCNSHXXX", None)}, refdata_digest="d",
    )  # fmt: skip


def obligation(oid: str, debtor: str, creditor: str, amount: int, **extra: Any) -> dict[str, Any]:
    return {"obligation_id": oid, "debtor_id": debtor, "creditor_id": creditor, "currency": "CNH",
            "amount_minor": amount, "priority": extra.pop("priority", 0),
            "source": extra.pop("source", "PAYMENT"), **extra}  # fmt: skip


def marker(n: int) -> dict[str, Any]:
    return {"marker_id": f"m{n}", "currency": "CNH", "reason": "MANUAL", "requested_by": "t",
            "requested_at": T0}  # fmt: skip


def test_cycle_nets_settles_per_rail_and_counts_duplicates(codec: SingleObjectCodec) -> None:
    ledger = CurrencyLedger("CNH")
    assert ledger.add(obligation("a", "DC", "SOLAR", 1_250_000))
    assert ledger.add(obligation("b", "SOLAR", "LEASE", 950_000))
    assert ledger.add(obligation("c", "GPU", "SOLAR", 640_000))
    assert not ledger.add(obligation("a", "DC", "SOLAR", 1_250_000))
    outcome = ledger.close(marker(1), T0, context(), rejected_count=3)
    report = outcome.report
    assert (report["gross_minor"], report["settled_gross_minor"]) == (2_840_000, 2_840_000)
    assert report["net_minor"] == 1_890_000  # SOLAR +940,000 and LEASE +950,000
    assert report["duplicate_count"] == 1
    assert report["rejected_count"] == 3
    assert report["batch_ids"] == ["cnh-cips-CNH-00000001", "cnh-stable-CNH-00000001"]
    cips, stable = outcome.batches
    assert [(i["payer_id"], i["payee_id"], i["amount_minor"]) for i in cips["instructions"]] == [
        ("DC", "CLEARING_HOUSE", 1_250_000), ("GPU", "CLEARING_HOUSE", 640_000),
    ]  # fmt: skip
    assert cips["instructions"][0]["payer_bic"] == "DCBKCNSHXXX"
    assert sum(i["amount_minor"] for i in stable["instructions"]) == 1_890_000
    assert stable["control_sum_rail_units"] == 1_890_000 * 10_000
    assert report["treasury"] == [
        {"from_rail": "cnh-cips", "to_rail": "cnh-stable", "amount_minor": 1_890_000}
    ]
    positions = {p["participant_id"]: p["net_minor"] for p in outcome.positions}
    assert positions == {"DC": -1_250_000, "GPU": -640_000, "LEASE": 950_000, "SOLAR": 940_000}
    for batch in outcome.batches:
        codec.encode("SettlementBatch", batch)
    codec.encode("CycleReport", report)
    for position in outcome.positions:
        codec.encode("Position", position)


def test_caps_defer_and_carry_into_the_next_cycle() -> None:
    ledger = CurrencyLedger("CNH")
    ledger.add(obligation("p1", "DC", "SOLAR", 1_250_000))
    ledger.add(obligation("p2", "DC", "SOLAR", 1_180_000))
    first = ledger.close(marker(1), T0, context(caps={"DC": 2_000_000}))
    assert first.carried.obligation_id == ("p2",)
    assert (first.report["deferred_count"], first.report["deferred_minor"]) == (1, 1_180_000)
    second = ledger.close(marker(2), T0 + timedelta(minutes=1), context(caps={"DC": 2_000_000}))
    assert second.report["carried_in_count"] == 1
    assert second.report["settled_gross_minor"] == 1_180_000
    assert second.carried.obligation_id == ()
    # a late duplicate of a carried obligation is still dropped
    assert not ledger.add(obligation("p2", "DC", "SOLAR", 1_180_000))


def test_remainders_settle_once_whole() -> None:
    ledger = CurrencyLedger("CNH")
    for i in range(3):  # 3 x 0.4 fen
        ledger.add(obligation(f"m{i}", "DC", "SOLAR", 0, remainder_ppm=400_000,
                              carry_key="ppa:P1", source="METER"))  # fmt: skip
    first = ledger.close(marker(1), T0, context())
    assert first.report["gross_minor"] == 1
    assert ledger.remainders["ppa:P1"].remainder_ppm == 200_000
    ledger.add(obligation("m9", "DC", "SOLAR", 5, remainder_ppm=800_000, carry_key="ppa:P1",
                          source="METER"))  # fmt: skip
    second = ledger.close(marker(2), T0, context())
    assert second.report["gross_minor"] == 6  # 5 + one whole fen from 0.2 + 0.8
    assert ledger.remainders["ppa:P1"].remainder_ppm == 0


def test_same_log_same_bytes(codec: SingleObjectCodec) -> None:
    def run() -> list[bytes]:
        ledger = CurrencyLedger("CNH")
        for i in range(50):
            ledger.add(obligation(f"o{i}", ["DC", "GPU", "SOLAR"][i % 3],
                                  ["SOLAR", "LEASE", "DC"][i % 3], 1000 + i))  # fmt: skip
        outcome = ledger.close(marker(1), T0, context(caps={"GPU": 5_000}))
        return [codec.encode("SettlementBatch", b) for b in outcome.batches]

    assert run() == run()


def test_an_empty_cycle_reports_zero() -> None:
    outcome = CurrencyLedger("CNH").close(marker(1), T0, context())
    assert outcome.batches == []
    assert outcome.report["obligation_count"] == 0
    assert outcome.report["netting_efficiency"] == 0.0
