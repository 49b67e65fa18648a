"""``clearing dlq`` on a real broker (issue 19): events refused for reference data
they name are counted and shown with their headers, the reference data is fixed,
the re-drive runs twice (the second sends nothing), and every re-driven event is
accepted exactly once and settles with a simulated bank; a letter whose cause was
not fixed is refused again and never sent a second time.

A module-scoped broker of its own: the DLQ and the re-drive's topic are counted
whole.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Producer

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_services.kafka.clients import produce_records, producer_config, read_topic
from tests.support.events import meter_reading, payment
from tests.support.pipeline import (
    CLEARING,
    REFDATA_FILE,
    REPO,
    clearing,
    close_cycle,
    decoded,
    env,
    stop_process,
    wait_for_carried,
    wait_for_dlq,
    wait_until,
    worker,
)

pytestmark = pytest.mark.own_broker
NEWCO, DC = "NEWCO-SZ-09", "DC-SHENZHEN-01"
PAYMENTS = {"dlq-1": 40_000, "dlq-2": 2_500}  # NEWCO -> DC, refused: NEWCO is unknown
TRACE = ("trace-id", b"ticket-4711")


def with_newco(tmp: Path) -> Path:
    """The pipeline's reference data, NEWCO added with a CIPS account (the fix)."""
    data = yaml.safe_load(REFDATA_FILE.read_text())
    account = {"currency": "CNH", "rail_id": "cnh-cips"}
    data["participants"].append({"participant_id": NEWCO, "name": "Newco Compute Ltd.",
                                 "roles": ["DATA_CENTRE"], "bic": "ABCDCNBJ",
                                 "accounts": [account]})  # fmt: skip
    path = tmp / "with-newco.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def send_with_headers(bootstrap: str, items: list[tuple[bytes | None, bytes]], topic: str) -> None:
    produce_records(Producer(producer_config(bootstrap)), [(topic, k, v) for k, v in items],
                    headers_of=lambda *_: [TRACE])  # fmt: skip


def dlq(bootstrap: str, state: Path, *args: str) -> dict[str, Any]:
    done = clearing(bootstrap, state, "dlq", *args, "--json")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


@contextmanager
def simulated_bank(bootstrap: str, state: Path) -> Iterator[None]:
    log = (state / "bank-cnh-cips.log").open("a")
    process = subprocess.Popen([*CLEARING, "bank", "simulate", "--rail", "cnh-cips",
                                "--reject-ratio", "0"], env=env(bootstrap, state), cwd=REPO,
                               stdout=log, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        yield
    finally:
        stop_process(process)
        log.close()


def final_cnh_cycle(bootstrap: str, state: Path) -> dict[str, Any] | None:
    listed = clearing(bootstrap, state, "cycles", "--currency", "CNH", "--json")
    assert listed.returncode == 0, listed.stderr
    cycles = json.loads(listed.stdout)["cycles"]
    return cycles[-1] if cycles and cycles[-1]["final"] else None


@dataclass
class Run:
    """What the module's one scenario left: the commands' answers and the topics."""

    before: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> JSON
    refused: subprocess.CompletedProcess[str] | None = None
    redrives: dict[str, dict[str, Any]] = field(default_factory=dict)
    cycle: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    carried: dict[str, str] = field(default_factory=dict)  # payment id -> its obligation


def send_refused(bootstrap: str, codec: SingleObjectCodec) -> None:
    """Two payments of an unknown payer, a self-payment, a truncated record and a
    reading under a contract nobody will add: five dead letters."""
    payments = [payment(i, NEWCO, DC, "TRANSFER", amount, reference=f"R-{i}")
                for i, amount in PAYMENTS.items()]  # fmt: skip
    payments.append(payment("dlq-self", DC, DC, "TRANSFER", 1, reference="R-self"))
    send_with_headers(bootstrap, [(r["payer_id"].encode(), codec.encode("Payment", r))
                                  for r in payments], "clearing.events.payment")  # fmt: skip
    send_with_headers(bootstrap, [(b"GPUCLOUD-SG-02", b"\xc3\x01\x00\x01")],
                      "clearing.events.compute")  # truncated Avro  # fmt: skip
    unfixed = meter_reading("dlq-m", 7, contract_id="PPA-UNKNOWN")
    send_with_headers(bootstrap, [(b"PPA-UNKNOWN", codec.encode("MeterReading", unfixed))],
                      "clearing.events.meter")  # fmt: skip


@pytest.fixture(scope="module")
def run(
    bootstrap: str, state: Path, codec: SingleObjectCodec, tmp_path_factory: pytest.TempPathFactory
) -> Run:
    """Refused, inspected, fixed (NEWCO joins; the restarted worker reads it), re-driven
    twice per reason, closed and settled by a simulated bank."""
    out = Run()
    with worker(bootstrap, state):
        send_refused(bootstrap, codec)
        wait_for_dlq(bootstrap, codec, 5)
    out.before["count"] = dlq(bootstrap, state, "count")
    out.before["by_participant"] = dlq(bootstrap, state, "count", "--by", "participant")
    out.before["unknown"] = dlq(bootstrap, state, "show", "--reason", "UNKNOWN_PARTICIPANT")
    out.before["truncated"] = dlq(bootstrap, state, "show", "--reason", "TRUNCATED_AVRO")
    out.refused = clearing(bootstrap, state, "dlq", "redrive", "--reason", "TRUNCATED_AVRO")
    out.before["dry"] = dlq(bootstrap, state, "redrive", "--reason", "UNKNOWN_PARTICIPANT",
                            "--dry-run")  # fmt: skip
    fixed = with_newco(tmp_path_factory.mktemp("dlq-refdata"))
    published = clearing(bootstrap, state, "refdata", "publish", str(fixed))
    assert published.returncode == 0, published.stderr
    with worker(bootstrap, state), simulated_bank(bootstrap, state):
        for name, reason in (("first", "UNKNOWN_PARTICIPANT"), ("again", "UNKNOWN_PARTICIPANT"),
                             ("unfixed", "UNKNOWN_CONTRACT")):  # fmt: skip
            out.redrives[name] = dlq(bootstrap, state, "redrive", "--reason", reason)
        wait_for_dlq(bootstrap, codec, 6)  # refused again: the contract is still unknown
        out.redrives["unfixed_again"] = dlq(bootstrap, state, "redrive", "--reason",
                                            "UNKNOWN_CONTRACT")  # fmt: skip
        out.carried = wait_for_carried(bootstrap, codec, PAYMENTS)
        close_cycle(bootstrap, state, "CNH")
        out.cycle = wait_until("the CNH cycle settled", lambda: final_cnh_cycle(bootstrap, state))
    out.after["count"] = dlq(bootstrap, state, "count")
    group = f"t-{time.time_ns()}"
    out.after["obligations"] = decoded(bootstrap, codec, "clearing.obligations", group)
    out.after["payments"] = read_topic(bootstrap, "clearing.events.payment", f"e-{time.time_ns()}")
    out.after["batches"] = decoded(bootstrap, codec, "clearing.settlement.batches.cnh-cips",
                                   f"b-{time.time_ns()}")  # fmt: skip
    return out


def test_dead_letters_are_counted_by_reason_and_by_who_sent_them(run: Run) -> None:
    assert run.before["count"]["counts"] == {
        "UNKNOWN_PARTICIPANT": 2, "SELF_PAYMENT": 1, "TRUNCATED_AVRO": 1,
        "UNKNOWN_CONTRACT": 1}  # fmt: skip
    assert run.before["by_participant"]["counts"] == {
        NEWCO: 2, DC: 1, "SOLAR-QINGHAI-07": 1, "(unknown)": 1}  # fmt: skip


def test_a_dead_letter_shows_its_original_decoded_or_in_hex_with_its_headers(run: Run) -> None:
    shown = run.before["unknown"]["dead_letters"]
    assert sorted(d["original"]["event_id"] for d in shown) == sorted(PAYMENTS)
    assert all(d["headers"] == [{"name": "trace-id", "value": "ticket-4711"}] for d in shown)
    assert {d["redrive"] for d in shown} == {"possible"}
    (hexed,) = run.before["truncated"]["dead_letters"]
    assert (hexed["original"], hexed["original_hex"]) == (None, "c3010001")


def test_a_reason_a_retry_cannot_change_is_refused_in_one_line(run: Run) -> None:
    assert run.refused is not None
    assert run.refused.returncode == 2
    assert run.refused.stderr.count("\n") == 1
    assert "never re-driven" in run.refused.stderr
    assert (run.before["dry"]["would_send"], run.before["dry"]["sent"]) == (2, 0)


def test_fixed_letters_are_redriven_once_and_a_second_run_sends_nothing(run: Run) -> None:
    first, again = run.redrives["first"], run.redrives["again"]
    assert (first["sent"], first["redriven_before"]) == (2, 0)
    assert (again["sent"], again["redriven_before"]) == (0, 2)
    assert run.after["count"]["counts"]["UNKNOWN_PARTICIPANT"] == 2  # none refused again
    resent = [r for r in run.after["payments"] if TRACE in r.headers]
    # the first sends (2 and the self-payment), then the re-drive naming its letter
    assert len(resent) == 2 * len(PAYMENTS) + 1
    origins = [dict(r.headers).get("clearing-redriven-from") for r in resent]
    assert sorted(o for o in origins if o) == sorted(
        f"dlq/{d['dlq'].replace(':', '/')}".encode() for d in run.before["unknown"]["dead_letters"]
    )


def test_a_letter_refused_again_is_never_sent_a_second_time(run: Run) -> None:
    once, twice = run.redrives["unfixed"], run.redrives["unfixed_again"]
    assert (once["matching"], once["sent"]) == (1, 1)
    assert (twice["matching"], twice["sent"], twice["redriven_before"]) == (2, 0, 2)
    assert run.after["count"]["counts"]["UNKNOWN_CONTRACT"] == 2


def test_every_redriven_event_is_accepted_once_and_settles(run: Run) -> None:
    # each carried by one obligation on the log (one aggregate if a batch took both)
    logged = {o["obligation_id"]: o for o in run.after["obligations"] if "obligation_id" in o}
    assert set(run.carried) == set(PAYMENTS)
    carriers = {o: logged[o] for o in run.carried.values()}
    assert sum(o["amount_minor"] for o in carriers.values()) == sum(PAYMENTS.values())
    assert sum(o["source_event_count"] for o in carriers.values()) == len(PAYMENTS)
    (cips,) = [r for r in run.cycle["rails"] if r["rail_id"] == "cnh-cips"]
    assert (cips["settled"], cips["failed"], cips["pending"]) == (2, 0, 0)  # NEWCO -> house -> DC
    (paid,) = [i for b in run.after["batches"] for i in b["instructions"] if i["payer_id"] == NEWCO]
    assert paid["amount_minor"] == sum(PAYMENTS.values())
