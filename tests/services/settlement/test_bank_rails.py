"""Bank rails speak ISO 20022 both ways (DESIGN §11, issue 18): a real worker and
broker, simulated banks answering every pacs.009 with a pacs.002, and a bank's
hand-written pacs.002 fed to ``clearing ack``.

A module-scoped broker of its own: the worker and the banks use the contract's
fixed topics and consumer groups.
"""

from __future__ import annotations

import itertools
import json
import random
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.exports.iso_schemas import validate
from clearing_services.kafka.topics import batch_topic
from tests.support.events import payment
from tests.support.pipeline import (
    CLEARING,
    REPO,
    clearing,
    close_cycle,
    decoded,
    env,
    send_events,
    stop_process,
    wait_for_carried,
    wait_for_obligation,
    wait_for_reports,
    wait_until,
    worker,
)

pytestmark = pytest.mark.own_broker
RAILS = {"CNH": "cnh-cips", "USD": "usd-swift"}
BANKS = ("BANK-HK-01", "BANK-HK-02", "BANK-SH-01", "BANK-SH-02", "BANK-BJ-01", "BANK-SZ-01")
REJECT_RATIO, SEED = 0.1, 7
ROUNDS, PAYMENTS_PER_ROUND = 4, 12
SETTLING_CLOSES_MAX = 6  # empty cycles in which the carried failures settle


@pytest.fixture(scope="module")
def refdata_file() -> Path:
    return REPO / "tests/data/bank-refdata.yaml"


@contextmanager
def simulated_banks(bootstrap: str, state: Path) -> Iterator[list[subprocess.Popen[str]]]:
    processes = []
    for rail in RAILS.values():
        log = (state / f"bank-{rail}.log").open("w")
        processes.append(subprocess.Popen(
            [*CLEARING, "bank", "simulate", "--rail", rail, "--reject-ratio", str(REJECT_RATIO),
             "--seed", str(SEED)],
            env=env(bootstrap, state), cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True,
        ))  # fmt: skip
    try:
        yield processes
    finally:
        for process in processes:
            stop_process(process)


def statuses(bootstrap: str, codec: SingleObjectCodec) -> dict[str, dict[str, Any]]:
    """Each instruction's latest state on clearing.settlement.status."""
    topic = "clearing.settlement.status"
    records = decoded(bootstrap, codec, topic, f"status-{time.time_ns()}")
    return {r["instruction_id"]: r for r in records}


def rail_batches(bootstrap: str, codec: SingleObjectCodec) -> list[dict[str, Any]]:
    topics = [batch_topic(rail) for rail in RAILS.values()]
    return [b for t in topics for b in decoded(bootstrap, codec, t, f"b-{time.time_ns()}")]


def all_final(bootstrap: str, codec: SingleObjectCodec) -> bool:
    batches = rail_batches(bootstrap, codec)
    known = statuses(bootstrap, codec)
    wanted = [i["instruction_id"] for b in batches for i in b["instructions"]]
    return bool(wanted) and all(known.get(i, {}).get("status") in ("SETTLED", "FAILED")
                                for i in wanted)  # fmt: skip


@pytest.fixture(scope="module")
def run(bootstrap: str, state: Path, codec: SingleObjectCodec) -> dict[str, Any]:
    """Rounds of transfers between six banks, each closed; then empty cycles until the
    last one of each currency has no failure: the carried amounts settled."""
    rng = random.Random(SEED)
    truth: dict[tuple[str, str], int] = defaultdict(int)
    with worker(bootstrap, state), simulated_banks(bootstrap, state):
        for round_no in range(ROUNDS + SETTLING_CLOSES_MAX):
            sent = []
            for n in range(PAYMENTS_PER_ROUND if round_no < ROUNDS else 0):
                payer, payee = rng.sample(BANKS, 2)
                currency = rng.choice(sorted(RAILS))
                amount = rng.randint(1, 5_000_000)
                truth[(payer, currency)] -= amount
                truth[(payee, currency)] += amount
                event_id = f"r{round_no}-{n}"
                sent.append(payment(event_id, payer, payee, "TRANSFER", amount, currency=currency,
                                    reference=f"INV-{event_id}"))  # fmt: skip
            if sent:
                send_events(bootstrap, codec, "payment", sent)
                wait_for_carried(bootstrap, codec, [e["event_id"] for e in sent])
            for currency in sorted(RAILS):
                close_cycle(bootstrap, state, currency)
                wait_for_reports(bootstrap, codec, currency, round_no + 1)
            wait_until(f"round {round_no} final", lambda: all_final(bootstrap, codec))
            if round_no >= ROUNDS and _last_cycles_clean(bootstrap, codec):
                break
        cycles = {c: len(wait_for_reports(bootstrap, codec, c, 0)) for c in RAILS}
        return {"truth": dict(truth), "batches": rail_batches(bootstrap, codec),
                "statuses": statuses(bootstrap, codec), "cycles": cycles}  # fmt: skip


def _last_cycles_clean(bootstrap: str, codec: SingleObjectCodec) -> bool:
    """No failure in the newest batch of each rail (nothing left to carry)."""
    known = statuses(bootstrap, codec)
    by_rail: dict[str, dict[str, Any]] = {}
    for batch in rail_batches(bootstrap, codec):
        if batch["cycle_seq"] >= by_rail.get(batch["rail_id"], {}).get("cycle_seq", 0):
            by_rail[batch["rail_id"]] = batch
    return all(known[i["instruction_id"]]["status"] == "SETTLED"
               for b in by_rail.values() for i in b["instructions"])  # fmt: skip


def test_rejected_instructions_are_carried_and_settle_in_a_later_cycle(
    run: dict[str, Any], bootstrap: str, codec: SingleObjectCodec
) -> None:
    failed = [s for s in run["statuses"].values() if s["status"] == "FAILED"]
    assert failed, "the seed gives rejections: the test must see some"
    assert {s["reason_code"] for s in failed} <= {"AM04", "AC01", "AB03", "AB04", "ED05", "NARR"}
    for status in failed:
        wait_for_obligation(bootstrap, codec, f"f:{status['instruction_id']}")
    settled: dict[tuple[str, str], int] = defaultdict(int)
    for batch in run["batches"]:
        for line in batch["instructions"]:
            if run["statuses"][line["instruction_id"]]["status"] == "SETTLED":
                settled[(line["payer_id"], batch["currency"])] -= line["amount_minor"]
                settled[(line["payee_id"], batch["currency"])] += line["amount_minor"]
    settled.pop(("CLEARING_HOUSE", "CNH"), None)
    settled.pop(("CLEARING_HOUSE", "USD"), None)
    assert {k: v for k, v in settled.items() if v} == {k: v for k, v in run["truth"].items() if v}


def test_every_document_written_validates_against_its_xsd(run: dict[str, Any], state: Path) -> None:
    documents = sorted((state / "bank").rglob("*.xml"))
    batch_ids = {b["batch_id"] for b in run["batches"]}
    assert {p.name.split(".")[0] for p in documents} == batch_ids
    for path in documents:
        validate(path.read_bytes(), "pacs.009.001.08" if ".pacs009." in path.name
                 else "pacs.002.001.10")  # fmt: skip


def test_a_hand_written_report_fails_one_instruction_and_is_idempotent(
    run: dict[str, Any], bootstrap: str, state: Path, codec: SingleObjectCodec, tmp_path: Path
) -> None:
    """After the run, a new cycle with no bank running: a bank's own file, written here."""
    del run
    pairs = enumerate(itertools.pairwise(BANKS))
    sent = [payment(f"h-{n}", a, b, "TRANSFER", 10_000 * (n + 1), currency="USD",
                    reference=f"H-{n}") for n, (a, b) in pairs]  # fmt: skip
    with worker(bootstrap, state):
        send_events(bootstrap, codec, "payment", sent)
        wait_for_carried(bootstrap, codec, [e["event_id"] for e in sent])
        before = {b["batch_id"] for b in rail_batches(bootstrap, codec)}
        reports = len(wait_for_reports(bootstrap, codec, "USD", 0))
        close_cycle(bootstrap, state, "USD")
        wait_for_reports(bootstrap, codec, "USD", reports + 1)
        batch = wait_until("the new USD batch", lambda: next(
            (b for b in rail_batches(bootstrap, codec)
             if b["batch_id"] not in before and b["rail_id"] == "usd-swift"), None))  # fmt: skip
        lines = batch["instructions"]
        interim = tmp_path / "interim.xml"  # first the bank's ACSP: accepted, in process
        interim.write_text(_hand_written(batch["batch_id"], len(lines), lines[1]["end_to_end_id"],
                                         status="ACSP", group="PART"))  # fmt: skip
        assert clearing(bootstrap, state, "ack", str(interim)).returncode == 0
        pending = wait_until("the interim status", lambda: statuses(bootstrap, codec).get(
            lines[1]["instruction_id"]))  # fmt: skip
        assert (pending["status"], pending["reason_code"]) == ("PENDING", None)
        report = tmp_path / "pacs002.xml"
        report.write_text(_hand_written(batch["batch_id"], len(lines), lines[0]["end_to_end_id"]))
        for attempt in range(2):
            done = clearing(bootstrap, state, "ack", str(report), "--json")
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["sent"] == len(lines), attempt
        ids = {i["instruction_id"] for i in lines}

        def settled() -> dict[str, Any]:
            found = {k: v for k, v in statuses(bootstrap, codec).items() if k in ids}
            return found if len(found) == len(ids) else {}

        states = wait_until("the report applied", settled)
        unknown = tmp_path / "unknown.xml"
        unknown.write_text(_hand_written(batch["batch_id"], len(lines), "E-NEVER-SENT"))
        refused = clearing(bootstrap, state, "ack", str(unknown))
    assert sorted((s["status"], s["reason_code"]) for s in states.values()) == sorted(
        [("FAILED", "AM04")] + [("SETTLED", None)] * (len(lines) - 1))  # fmt: skip
    assert states[lines[0]["instruction_id"]]["bank_id"] == "SWIFT-USD-OPS"
    carry_id = f"f:{lines[0]['instruction_id']}"
    obligations = decoded(bootstrap, codec, "clearing.obligations", "h-obl")
    failed_obligations = [r for r in obligations if r.get("obligation_id") == carry_id]
    assert len(failed_obligations) == 1  # the second feed changed nothing
    assert refused.returncode != 0
    assert "TxInfAndSts[1]/OrgnlEndToEndId: 'E-NEVER-SENT'" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def _hand_written(
    batch_id: str, count: int, e2e: str, *, status: str = "RJCT", group: str = "ACSC"
) -> str:
    """A SWIFT gateway's pacs.002: by default one RJCT AM04, the group ACSC for the rest."""
    reason = "<StsRsnInf><Rsn><Cd>AM04</Cd></Rsn></StsRsnInf>" if status == "RJCT" else ""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pacs.002.001.10">
 <FIToFIPmtStsRpt>
  <GrpHdr>
   <MsgId>GZBK-STS-000981</MsgId>
   <CreDtTm>2026-12-07T10:15:00.000Z</CreDtTm>
   <InstgAgt><FinInstnId><BICFI>GZBKUS33</BICFI></FinInstnId></InstgAgt>
  </GrpHdr>
  <OrgnlGrpInfAndSts>
   <OrgnlMsgId>{batch_id}</OrgnlMsgId>
   <OrgnlMsgNmId>pacs.009.001.08</OrgnlMsgNmId>
   <OrgnlNbOfTxs>{count}</OrgnlNbOfTxs>
   <GrpSts>{group}</GrpSts>
  </OrgnlGrpInfAndSts>
  <TxInfAndSts>
   <OrgnlEndToEndId>{e2e}</OrgnlEndToEndId>
   <TxSts>{status}</TxSts>
   {reason}
  </TxInfAndSts>
 </FIToFIPmtStsRpt>
</Document>
"""


def test_statements_add_up_to_what_settled_and_what_is_carried(
    run: dict[str, Any], bootstrap: str, state: Path
) -> None:
    """Per bank and currency: the settled lines of its statements over the run plus
    the last running balance are its obligations' net, to the minor unit."""
    for bank in BANKS:
        done = clearing(bootstrap, state, "statement", "--participant", bank, "--format", "json")
        assert done.returncode == 0, done.stderr
        listed = json.loads(done.stdout)["statements"]
        for currency in RAILS:
            mine = [
                s
                for s in listed  # the run's cycles, not a later test's
                if s["currency"] == currency and s["cycle_seq"] <= run["cycles"][currency]
            ]
            settled = sum(line["amount_minor"] * (1 if line["direction"] == "CREDIT" else -1)
                          for s in mine for line in s["instructions"]
                          if line["status"] == "SETTLED")  # fmt: skip
            assert sum(s["settled_minor"] for s in mine) == settled
            outstanding = mine[-1]["outstanding_minor"] if mine else 0
            assert settled + outstanding == run["truth"].get((bank, currency), 0), (bank, currency)
            assert outstanding == 0  # the run ended with every failure settled
            for s in mine:
                net = s["obligations_in_minor"] - s["obligations_out_minor"]
                assert net == s["net_position_minor"]
