"""A currency's cycles: duplicates dropped, caps defer and carry, remainders settle
once whole, per-rail batches that encode deterministically."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clearing_core.cycle.context import CycleContext, RailInfo
from clearing_core.cycle.ledger import CurrencyLedger, CycleOutcome, rehearse_close
from clearing_core.cycle.settlement import RailSpec
from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.money import MoneyOverflowError

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


def random_log(seed: int, cycles: int, per_cycle: int) -> list[list[dict[str, Any]]]:
    """Per cycle, records in log order: payments, metered obligations with remainders
    (some only a remainder), failed settlements at a high priority, and late duplicates."""
    rng = random.Random(seed)
    parties = ["DC", "GPU", "SOLAR", "LEASE", "CLEARING_HOUSE"]
    log: list[list[dict[str, Any]]] = []
    sent: list[dict[str, Any]] = []
    for c in range(cycles):
        batch = []
        for i in range(per_cycle):
            if sent and rng.random() < 0.05:
                batch.append(dict(rng.choice(sent)))  # a re-delivery, maybe cycles later
                continue
            debtor, creditor = rng.sample(parties[:4], 2)
            kind = rng.random()
            extra: dict[str, Any] = {}
            if kind < 0.3:  # metered: the remainder belongs to the (debtor, creditor) contract
                extra = {"remainder_ppm": rng.randrange(1_000_000), "source": "METER",
                         "carry_key": f"ppa:{debtor}:{creditor}"}  # fmt: skip
            elif kind < 0.35:
                debtor, creditor = rng.choice(parties[:4]), "CLEARING_HOUSE"
                extra = {"source": "FAILED_SETTLEMENT", "priority": 100}
            amount = 0 if kind < 0.05 else rng.randrange(1, 900_000)
            rec = obligation(f"o{c}-{i}", "".join(debtor), "".join(creditor), amount, **extra)
            batch.append(rec)
            sent.append(rec)
        log.append(batch)
    return log


PARTY_FIELDS = ("obligation_id", "debtor_id", "creditor_id", "amount_minor", "priority", "source")


class Expected:
    """A straightforward model of a ledger: what each cycle must hold, given which
    obligations the netting deferred (the one choice left to the kernel)."""

    def __init__(self) -> None:
        self.counted: set[str] = set()
        self.remainders: dict[str, list[Any]] = {}  # key -> [ppm, obligation fields]
        self.carried: list[dict[str, Any]] = []

    def cycle(self, seq: int, batch: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
        """The cycle's obligations (carried first) and its duplicate count."""
        opened, duplicates = [], 0
        for r in batch:
            if r["obligation_id"] in self.counted:
                duplicates += 1
                continue
            self.counted.add(r["obligation_id"])
            fields = {f: r.get(f, 0) for f in PARTY_FIELDS}
            if r.get("remainder_ppm"):
                self.remainders.setdefault(r["carry_key"], [0, fields])[0] += r["remainder_ppm"]
            if r["amount_minor"]:
                opened.append(fields)
        for key in sorted(self.remainders):
            entry = self.remainders[key]
            whole, entry[0] = divmod(entry[0], 1_000_000)
            if whole:
                opened.append({**entry[1], "obligation_id": f"r:{key}:{seq}",
                               "amount_minor": whole})  # fmt: skip
        return [*self.carried, *opened], duplicates


def check_cycle(outcome: CycleOutcome, combined: list[dict[str, Any]], duplicates: int,
                carried_in: list[dict[str, Any]]) -> list[dict[str, Any]]:  # fmt: skip
    report, carried = outcome.report, outcome.carried.records()
    deferred_ids = {r["obligation_id"] for r in carried}
    assert carried == [r for r in combined if r["obligation_id"] in deferred_ids]  # exact, in order
    settled = [r for r in combined if r["obligation_id"] not in deferred_ids]
    parties = sorted({r[f] for r in combined for f in ("debtor_id", "creditor_id")})
    assert [p["participant_id"] for p in outcome.positions] == parties
    for p in outcome.positions:
        me = p["participant_id"]
        payable = sum(r["amount_minor"] for r in settled if r["debtor_id"] == me)
        receivable = sum(r["amount_minor"] for r in settled if r["creditor_id"] == me)
        deferred = sum(r["amount_minor"] for r in carried if r["debtor_id"] == me)
        assert (p["payable_minor"], p["receivable_minor"], p["deferred_minor"]) == (
            payable, receivable, deferred)  # fmt: skip
        assert p["net_minor"] == receivable - payable
    failed = [r for r in combined[len(carried_in) :] if r["source"] == "FAILED_SETTLEMENT"]
    assert {k: report[k] for k in (
        "obligation_count", "duplicate_count", "gross_minor", "settled_gross_minor",
        "deferred_count", "deferred_minor", "carried_in_count", "carried_in_minor",
        "failed_carried_count", "failed_carried_minor",
    )} == {
        "obligation_count": len(combined), "duplicate_count": duplicates,
        "gross_minor": sum(r["amount_minor"] for r in combined),
        "settled_gross_minor": sum(r["amount_minor"] for r in settled),
        "deferred_count": len(carried), "deferred_minor": sum(r["amount_minor"] for r in carried),
        "carried_in_count": len(carried_in),
        "carried_in_minor": sum(r["amount_minor"] for r in carried_in),
        "failed_carried_count": len(failed),
        "failed_carried_minor": sum(r["amount_minor"] for r in failed),
    }  # fmt: skip
    return carried


def test_random_cycles_match_a_straightforward_model() -> None:
    caps = {"DC": 600_000, "GPU": 900_000, "CLEARING_HOUSE": 0}
    log = [*random_log(seed=11, cycles=5, per_cycle=300), []]  # the last: only carried ones
    ledger, model = CurrencyLedger("CNH"), Expected()
    total_in = total_settled = 0
    carried_counts = []
    for n, batch in enumerate(log):
        for rec in batch:
            ledger.add(rec)
        combined, duplicates = model.cycle(n + 1, batch)
        outcome = ledger.close(marker(n), T0 + timedelta(minutes=n), context(caps=caps))
        total_in += sum(r["amount_minor"] for r in combined[len(model.carried) :])
        total_settled += outcome.report["settled_gross_minor"]
        model.carried = check_cycle(outcome, combined, duplicates, model.carried)
        carried_counts.append(len(model.carried))
        assert all(ledger.remainders[k].remainder_ppm == v[0] for k, v in model.remainders.items())
    assert total_in == total_settled + outcome.report["deferred_minor"]  # nothing lost or made
    assert sum(carried_counts[:-2]) > 0  # the caps did defer, and deferred ones came back


def test_an_amount_outside_int64_is_refused_and_leaves_the_cycle_whole() -> None:
    ledger = CurrencyLedger("CNH")
    ledger.add(obligation("a", "DC", "SOLAR", 700))
    with pytest.raises(MoneyOverflowError):
        ledger.add(obligation("b", "GPU", "LEASE", 2**63))
    with pytest.raises(MoneyOverflowError):
        ledger.add(obligation("c", "GPU", "LEASE", 5, priority=-(2**63) - 1))
    outcome = ledger.close(marker(1), T0, context())
    assert outcome.report["gross_minor"] == 700
    assert [p["participant_id"] for p in outcome.positions] == ["DC", "SOLAR"]


def test_a_rehearsal_closes_a_throwaway_cycle_on_every_rail() -> None:
    """What a netting worker runs at start so that its first real close loads no kernel."""
    ctx = context()
    outcome = rehearse_close(ctx, T0)
    assert outcome is not None
    assert outcome.report["obligation_count"] == 2 * len(set(ctx.rail_of.values()))
    assert sorted(b["rail_id"] for b in outcome.batches) == sorted(set(ctx.rail_of.values()))
    assert sum(p["net_minor"] for p in outcome.positions) == 0
    lonely = CycleContext("CNH", "CNY", 2, ctx.rails, {"A": "cnh-stable"}, {}, {})
    assert rehearse_close(lonely, T0) is None  # no rail with two participants: nothing to do
