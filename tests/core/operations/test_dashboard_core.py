"""The dashboard's pure aggregation: cycle series, batch rows, DLQ counts, rates,
liquidity, units and the health strip."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from clearing_core.operations.dashboard import (
    DLQ_RECENT_MINUTES,
    DashboardState,
    OffsetsSample,
    cycle_series,
    dlq_command,
    dlq_counts,
    health,
    rates,
    units_of,
)
from clearing_core.refdata.loader import load_default_refdata

MINUTE_MS = 60_000


def report(currency: str, seq: int, gross: int, net: int) -> dict[str, Any]:
    return {"cycle_id": f"{currency}-{seq:08d}", "currency": currency, "cycle_seq": seq,
            "closed_at": datetime(2026, 11, 24, 8, seq, tzinfo=UTC), "obligation_count": 3,
            "gross_minor": gross, "net_minor": net, "netting_efficiency": 1 - net / gross,
            "instruction_count": 2, "deferred_count": 0, "deferred_minor": 0,
            "carried_in_count": seq, "carried_in_minor": 10 * seq, "failed_carried_count": 1,
            "failed_carried_minor": 7, "rejected_count": 1,
            "batch_ids": [f"r-{currency}-{seq:08d}"]}  # fmt: skip


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


def test_a_cycle_point_carries_what_was_deferred_and_carried_in() -> None:
    (point,) = cycle_series([report("CNH", 3, 1000, 400)])["CNH"]
    assert (point["carried_in_count"], point["carried_in_minor"]) == (3, 30)
    assert (point["failed_carried_count"], point["failed_carried_minor"]) == (1, 7)


def rejected(reason: str, at_ms: int) -> dict[str, Any]:
    return {"reason_code": reason, "stage": "validate",
            "rejected_at": datetime.fromtimestamp(at_ms / 1000, tz=UTC)}  # fmt: skip


def test_dead_letters_by_reason_with_the_recent_ones_and_the_command() -> None:
    state = DashboardState()
    now = 100 * MINUTE_MS
    old = now - (DLQ_RECENT_MINUTES + 1) * MINUTE_MS
    for reason, at in (("UNKNOWN_CONTRACT", old), ("UNKNOWN_CONTRACT", now - MINUTE_MS),
                       ("SELF_PAYMENT", old), ("UNKNOWN_CONTRACT", now)):  # fmt: skip
        state.add_rejected(rejected(reason, at))
    reasons = state.snapshot(now)["dlq_reasons"]
    assert reasons == [
        {"reason": "UNKNOWN_CONTRACT", "count": 3, "recent": 2, "last_ms": now,
         "command": "clearing dlq show --reason UNKNOWN_CONTRACT"},
        {"reason": "SELF_PAYMENT", "count": 1, "recent": 0, "last_ms": old,
         "command": "clearing dlq show --reason SELF_PAYMENT"},
    ]  # fmt: skip
    assert dlq_command("odd reason; rm") == "clearing dlq show --reason 'odd reason; rm'"


def test_units_come_from_the_reference_data() -> None:
    units = units_of(load_default_refdata())
    assert units["currencies"]["CNH"]["exponent"] == 2
    assert units["rails"]["cnh-stable"] == {"currency": "CNH", "decimals": 6, "unit": "CNHT"}
    assert units["rails"]["cnh-cips"]["unit"] == "CNH"


def position(participant: str, net: int, cap: int | None, seq: int = 1) -> dict[str, Any]:
    return {"participant_id": participant, "currency": "CNH", "cycle_seq": seq,
            "receivable_minor": max(0, net), "payable_minor": max(0, -net), "net_minor": net,
            "deferred_minor": 0, "net_debit_cap_minor": cap,
            "as_of": datetime(2026, 12, 7, tzinfo=UTC)}  # fmt: skip


def lag(*groups: tuple[str, str, list[str]]) -> dict[str, Any]:
    return {"groups": [{"group": g, "status": s, "members": 1,
                        "partitions": [{"status": p} for p in parts]}
                       for g, s, parts in groups]}  # fmt: skip


def test_health_is_ok_when_all_is_quiet() -> None:
    state = DashboardState()
    state.add_position(position("A", -10, 100))
    snap = state.snapshot(0)
    snap["lag"] = lag(("clearing-ingest", "OK", ["OK"]), ("clearing-netting", "OK", ["OK"]))
    quiet = health(snap, {})
    assert quiet["status"] == "OK"
    assert set(quiet["signals"].values()) == {"OK"}
    assert quiet["groups"] == {"clearing-ingest": "OK", "clearing-netting": "OK"}
    assert (quiet["stalled"], quiet["dlq_total"], quiet["pending"], quiet["at_cap"]) == (
        [], 0, 0, 0)  # fmt: skip


def test_health_names_what_is_wrong() -> None:
    state = DashboardState()
    now = 10 * MINUTE_MS
    state.add_rejected(rejected("UNKNOWN_CONTRACT", now - MINUTE_MS))
    state.add_position(position("A", -100, 100))  # at its cap
    state.ack_timeouts = {"cnh-cips": 60}
    state.add_cycle(report("CNH", 1, 1000, 400) | {"batch_ids": ["b-1"]})
    state.add_batch(batch("cnh-cips", 1) | {"batch_id": "b-1", "instructions": [
        {"instruction_id": "i-1", "amount_minor": 60}, {"instruction_id": "i-2",
        "amount_minor": 40}]})  # fmt: skip
    state.add_status({"instruction_id": "i-1", "status": "SETTLED"})
    fresh = state.snapshot(now)
    fresh["lag"] = lag()
    assert health(fresh, {})["signals"]["dlq"] == "WARN"  # a dead letter a minute ago
    assert health(fresh, {})["signals"]["lag"] == "WARN"  # no groups seen yet
    snap = state.snapshot(int(datetime(2026, 11, 24, 1, tzinfo=UTC).timestamp() * 1000))
    snap["lag"] = lag(("clearing-ingest", "WARN", ["WARN"]), ("clearing-netting", "ERR",
                      ["OK", "STALL"]))  # fmt: skip
    found = health(snap, {"sample": "broker down"})
    assert found["status"] == "ERR"
    assert found["signals"] == {
        "lag": "ERR",
        "stalled": "ERR",
        "dlq": "OK",
        "finality": "ERR",
        "liquidity": "WARN",
        "dashboard": "ERR",
    }
    assert found["stalled"] == ["clearing-netting"]
    assert (found["pending"], found["overdue"], found["cycles_not_final"]) == (1, 1, 1)
    assert (found["at_cap"], found["dlq_total"]) == (1, 1)
    assert found["dlq_recent"] == 0  # the rejection is long before this snapshot's time
