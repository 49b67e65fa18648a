"""The dashboard's pure aggregation: cycle series, batch rows, DLQ counts, rates."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from clearing_core.operations.dashboard import (
    DashboardState,
    OffsetsSample,
    cycle_series,
    dlq_counts,
    rates,
)


def report(currency: str, seq: int, gross: int, net: int) -> dict[str, Any]:
    return {"cycle_id": f"{currency}-{seq:08d}", "currency": currency, "cycle_seq": seq,
            "closed_at": datetime(2026, 11, 24, 8, seq, tzinfo=UTC), "obligation_count": 3,
            "gross_minor": gross, "net_minor": net, "netting_efficiency": 1 - net / gross,
            "instruction_count": 2, "deferred_count": 0, "deferred_minor": 0,
            "rejected_count": 1, "batch_ids": [f"r-{currency}-{seq:08d}"]}  # fmt: skip


def batch(rail: str, seq: int, count: int = 2, total: int = 100) -> dict[str, Any]:
    return {"batch_id": f"{rail}-CNH-{seq:08d}", "rail_id": rail, "currency": "CNH",
            "cycle_id": f"CNH-{seq:08d}", "created_at": datetime(2026, 11, 24, tzinfo=UTC),
            "instruction_count": count, "control_sum_minor": total,
            "control_sum_rail_units": total * 10_000, "instructions": []}  # fmt: skip


def test_cycle_series_groups_by_currency_in_cycle_order_and_keeps_the_last() -> None:
    reports = [report("USD", 2, 300, 100), report("CNH", 1, 1000, 400),
               report("USD", 1, 200, 200), report("USD", 3, 500, 250)]  # fmt: skip
    series = cycle_series(reports, limit=2)
    assert list(series) == ["CNH", "USD"]
    assert [p["cycle_id"] for p in series["USD"]] == ["USD-00000002", "USD-00000003"]
    cnh = series["CNH"][0]
    assert (cnh["gross_minor"], cnh["net_minor"]) == (1000, 400)
    assert cnh["netting_efficiency"] == 0.6
    assert cnh["closed_at"] == "2026-11-24T08:01:00.000Z"  # plain JSON


def test_a_report_seen_twice_counts_once() -> None:
    series = cycle_series([report("CNH", 1, 1000, 400), report("CNH", 1, 1000, 300)])
    assert [p["net_minor"] for p in series["CNH"]] == [300]


def test_dlq_counts_by_reason() -> None:
    records = [{"reason_code": r} for r in ("UNKNOWN_CONTRACT", "SELF_PAYMENT", "UNKNOWN_CONTRACT")]
    assert dlq_counts(records) == {"SELF_PAYMENT": 1, "UNKNOWN_CONTRACT": 2}
    assert dlq_counts([]) == {}


def test_rates_from_offsets_samples() -> None:
    samples = [
        OffsetsSample(1_000, {"a": 10, "b": 5}),
        OffsetsSample(3_000, {"a": 30, "b": 5}),
        OffsetsSample(5_000, {"a": 50, "b": 3, "c": 7}),  # b recreated; c new
    ]
    assert rates(samples) == {"a": 10.0, "b": 0.0, "c": None}
    assert rates(samples[:1]) == {"a": None, "b": None}
    assert rates([]) == {}


def test_state_is_bounded_and_its_snapshot_is_plain_json() -> None:
    import orjson

    state = DashboardState(cycles_per_currency=3, batches_per_rail=2, rate_window=3)
    for seq in range(1, 6):
        state.add_cycle(report("CNH", seq, 1000 * seq, 100 * seq))
        state.add_batch(batch("cnh-stable", seq))
        state.add_offsets(OffsetsSample(seq * 1000, {"clearing.events.meter": seq * 4}))
    state.add_batch(batch("cnh-stable", 5, count=9))  # the same batch again: replaced
    state.rails.add("cnh-cips")
    for reason in ("UNKNOWN_CONTRACT", "SELF_PAYMENT", "UNKNOWN_CONTRACT"):
        state.add_rejected({"reason_code": reason, "stage": "validate"})

    snap = state.snapshot(0)
    assert [p["cycle_seq"] for p in snap["cycles"]["CNH"]] == [3, 4, 5]
    assert [b["batch_id"] for b in snap["batches"]["cnh-stable"]] == [
        "cnh-stable-CNH-00000005", "cnh-stable-CNH-00000004"]  # fmt: skip
    assert snap["batches"]["cnh-stable"][0]["instruction_count"] == 9
    assert snap["batches"]["cnh-cips"] == []
    assert snap["dlq"] == {"SELF_PAYMENT": 1, "UNKNOWN_CONTRACT": 2}
    assert snap["dlq_total"] == 3
    assert snap["dlq_by_stage"] == {"validate": 3}
    assert snap["throughput"] == {"clearing.events.meter": {"rate": 4.0, "log_end": 20}}
    assert len(state.offsets) == 3
    assert orjson.loads(orjson.dumps(snap)) == snap
