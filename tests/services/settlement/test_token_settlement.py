"""Token rails settle on a real EVM chain (DESIGN §11, issue 17): a real worker, a
real broker and the embedded chain node; batches become contract calls, the chain's
receipts become acknowledgements, a failure is carried and settles once funded.

A module-scoped broker of its own: the agent uses the contract's fixed topics and
consumer groups.
"""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from web3.contract import Contract

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.refdata.demo_chain import demo_address, house_key_name
from clearing_services.chain.client import ChainClient
from clearing_services.chain.local import LocalChain
from clearing_services.settlement.token_setup import DEMO_FUNDING_MINOR
from tests.support.chains import deployed as deployed_on
from tests.support.events import payment
from tests.support.pipeline import (
    chain_port,
    clearing,
    close_cycle,
    decoded,
    scrape,
    send_events,
    wait_for_carried,
    wait_for_obligation,
    wait_until,
    worker,
)

pytestmark = pytest.mark.own_broker
RAIL = "cnh-stable"
SOLAR, LEASECO, DC = "SOLAR-QINGHAI-07", "LEASECO-HK-01", "DC-SHENZHEN-01"
UNITS_PER_FEN = 10_000  # CNHT has 6 decimals, CNH 2
ADDRESS = {SOLAR: demo_address(SOLAR), LEASECO: demo_address(LEASECO),
           "CLEARING_HOUSE": demo_address(house_key_name(RAIL))}  # fmt: skip


@dataclass
class Chain:
    client: ChainClient
    token: Contract

    def balances(self) -> dict[str, int]:
        return {who: int(self.token.functions.balanceOf(a).call()) for who, a in ADDRESS.items()}


def acks(bootstrap: str, codec: SingleObjectCodec, batch_id: str) -> list[dict[str, Any]]:
    records = decoded(bootstrap, codec, "clearing.settlement.acks", f"acks-{batch_id}-{id(codec)}")
    return [r for r in records if r["batch_id"] == batch_id]


def wait_for_acks(bootstrap: str, codec: SingleObjectCodec, batch_id: str, count: int) -> list[Any]:
    def enough() -> list[dict[str, Any]]:
        found = acks(bootstrap, codec, batch_id)
        return found if len(found) >= count else []

    return wait_until(f"{count} acks of {batch_id}", enough)


def final_second_cycle(bootstrap: str, state: Path) -> list[dict[str, Any]]:
    """The CNH cycles as `clearing cycles` lists them, once the second is final."""
    listed = clearing(bootstrap, state, "cycles", "--currency", "CNH", "--json")
    assert listed.returncode == 0, listed.stderr
    cycles: list[dict[str, Any]] = json.loads(listed.stdout)["cycles"]
    return cycles if len(cycles) == 2 and cycles[1]["final"] else []


@pytest.fixture(scope="module")
def deployed(bootstrap: str, state: Path) -> dict[str, Any]:
    done = clearing(bootstrap, state, "settle", "--rail", RAIL, "--deploy", "--short", LEASECO,
                    "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


@pytest.fixture(scope="module")
def chain(state: Path, deployed: dict[str, Any]) -> Chain:
    client, _, token = deployed_on(state)
    return Chain(client, token)


def test_deploy_prefunds_the_demo_accounts_of_the_rail(deployed: dict[str, Any]) -> None:
    assert (deployed["deployed"], deployed["funded"], deployed["short"]) == (True, 3, [LEASECO])


def test_batches_settle_on_chain_and_a_carried_failure_settles_once_funded(
    bootstrap: str, state: Path, codec: SingleObjectCodec, chain: Chain
) -> None:
    before = chain.balances()
    with worker(bootstrap, state) as process:
        send_events(bootstrap, codec, "payment", [
            payment("t-1", LEASECO, SOLAR, "OM_FEE", 50_000),  # LEASECO holds no tokens
            payment("t-2", DC, SOLAR, "OM_FEE", 30_000),       # DC pays on CIPS: the house pays
        ])  # fmt: skip
        wait_for_carried(bootstrap, codec, ["t-1", "t-2"])  # priced before the close
        close_cycle(bootstrap, state, "CNH")
        first = wait_for_acks(bootstrap, codec, "cnh-stable-CNH-00000001", 2)
        by_payer = {a["instruction_id"]: a for a in first}
        statuses = sorted((a["status"], a["reason_code"]) for a in by_payer.values())
        assert statuses == [("FAILED", "INSUFFICIENT_BALANCE"), ("SETTLED", None)]
        assert all(a["transaction_hash"] and a["block_number"] for a in first)
        failed = next(a for a in first if a["status"] == "FAILED")
        wait_for_obligation(bootstrap, codec, f"f:{failed['instruction_id']}")
        assert chain.balances()[SOLAR] - before[SOLAR] == 30_000 * UNITS_PER_FEN
        # funding arrives; the carried instruction settles in the next cycle
        funded = clearing(bootstrap, state, "settle", "--rail", RAIL, "--fund", LEASECO)
        assert funded.returncode == 0, funded.stderr
        process.send_signal(signal.SIGKILL)  # and the worker dies: its restart resumes
    with worker(bootstrap, state):
        wait_for_obligation(bootstrap, codec, f"f:{failed['instruction_id']}")
        close_cycle(bootstrap, state, "CNH")
        second = wait_for_acks(bootstrap, codec, "cnh-stable-CNH-00000002", 1)
        # the worker's acks agent applies the ack (an instruction status): wait for it
        # before the worker stops, or nothing would ever apply it
        first_cycle, second_cycle = wait_until(
            "cycle 2 final (its ack applied)", lambda: final_second_cycle(bootstrap, state)
        )
    assert [(a["status"], a["reason_code"]) for a in second] == [("SETTLED", None)]
    after = chain.balances()
    assert {w: after[w] - before[w] for w in after} == {
        SOLAR: 80_000 * UNITS_PER_FEN, LEASECO: (DEMO_FUNDING_MINOR - 50_000) * UNITS_PER_FEN,
        "CLEARING_HOUSE": -30_000 * UNITS_PER_FEN}  # fmt: skip
    # one final ack per instruction, whatever the kill
    assert len(acks(bootstrap, codec, "cnh-stable-CNH-00000001")) == 2
    finality = {r["rail_id"]: (r["settled"], r["failed"], r["pending"], r["carried_minor"])
                for r in first_cycle["rails"]}  # fmt: skip
    assert finality == {"cnh-stable": (1, 1, 0, 50_000), "cnh-cips": (0, 0, 1, 0)}
    assert [(r["rail_id"], r["settled"]) for r in second_cycle["rails"]] == [("cnh-stable", 1)]
    assert (first_cycle["final"], second_cycle["final"]) == (False, True)  # CIPS: no bank ack


def test_a_chain_outage_is_counted_and_the_batch_settles_once_it_is_back(
    bootstrap: str, state: Path, codec: SingleObjectCodec, chain: Chain
) -> None:
    """The chain node dies: the worker's agent counts the error and starts again (the
    node with it, on the embedded chain); ingest and netting never stopped."""
    with worker(bootstrap, state) as process:
        for cycle, (event_id, node_up) in enumerate((("t-3", True), ("t-4", False)), start=3):
            if not node_up:  # the agent is settling: the node dies under it
                LocalChain(state / "chain", chain_port(state)).stop()
            paid = payment(event_id, LEASECO, SOLAR, "OM_FEE", 7_000, reference=f"I-{event_id}")
            send_events(bootstrap, codec, "payment", [paid])
            wait_for_carried(bootstrap, codec, [event_id])
            close_cycle(bootstrap, state, "CNH")
            if node_up:
                wait_for_acks(bootstrap, codec, f"cnh-stable-CNH-{cycle:08d}", 1)
        errors = 'clearing_chain_errors_total{rail="cnh-stable"}'
        wait_until("the chain error counted", lambda: scrape(process.metrics_url).get(errors))
        fourth = wait_for_acks(bootstrap, codec, "cnh-stable-CNH-00000004", 1)
    assert [(a["status"], a["reason_code"]) for a in fourth] == [("SETTLED", None)]
