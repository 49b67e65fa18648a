"""kill -9 of the settlement agent at each of its crash points, again and again, while
cycles keep closing (issue 17's acceptance): every batch is paid exactly once (the
chain's own logs say so), every instruction has exactly one final acknowledgement,
and the balances on chain move by exactly the settled positions.

The agent dies by a real SIGKILL at the points it names (``CLEARING_FAULTS``:
before a call is sent, after it is sent and before its receipt, after the receipt
and before the Kafka transaction commits) and is restarted like a supervisor
would. A module-scoped broker of its own: the contract's fixed topics and groups.
"""

from __future__ import annotations

import random
import re
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from web3.contract import Contract

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.exports.token_calls import call_key
from clearing_services.chain.client import ChainClient
from tests.services.settlement.test_token_settlement import ADDRESS, UNITS_PER_FEN, acks
from tests.support.chains import deployed
from tests.support.events import payment
from tests.support.pipeline import (
    CLEARING,
    REPO,
    batches,
    clearing,
    close_cycle,
    env,
    send_events,
    stop_process,
    wait_for_carried,
    wait_until,
    worker,
)

pytestmark = pytest.mark.own_broker
RAIL = "cnh-stable"
PARTIES = ("SOLAR-QINGHAI-07", "LEASECO-HK-01", "DC-SHENZHEN-01")
CYCLES_MIN = 10  # then more, until the kills are enough (the points are drawn at random)
CYCLES_MAX = 40
KILLS_MIN = 10
FAULTS = "before_submit=0.1,after_submit=0.35,before_commit=0.35"
POINTS = ("before_submit", "after_submit", "before_commit")


@dataclass
class Supervised:
    """``clearing settle`` restarted whenever it dies, as systemd's Restart=always."""

    bootstrap: str
    state: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    exits: list[int] = field(default_factory=list)

    @property
    def log(self) -> Path:
        return self.state / "settle-chaos.log"

    def keep_running(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        if self.process is not None:
            self.exits.append(int(self.process.returncode))
        agent_env = {**env(self.bootstrap, self.state, worker_id="settle-chaos"),
                     "CLEARING_FAULTS": FAULTS}  # fmt: skip
        command = [*CLEARING, "settle", "--rail", RAIL]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(command, env=agent_env, cwd=REPO, stdout=out,
                                            stderr=subprocess.STDOUT)  # fmt: skip
        self.starts += 1

    def kills(self) -> Counter[str]:
        text = self.log.read_text() if self.log.exists() else ""
        return Counter(re.findall(r"fault: SIGKILL at (\w+)", text))


def settled_keys(client: ChainClient, settlement: Contract) -> Counter[bytes]:
    """How many times the chain recorded each batch key: its BatchSettled events."""
    event = settlement.events.BatchSettled()
    logs = client.w3.eth.get_logs({"address": settlement.address, "fromBlock": 0,
                                   "toBlock": "latest", "topics": [event.topic]})  # fmt: skip
    return Counter(bytes(event.process_log(log)["args"]["batch_key"]) for log in logs)


def all_batches(bootstrap: str, codec: SingleObjectCodec, count: int) -> dict[str, Any]:
    found = batches(bootstrap, codec, RAIL)
    return found if len(found) >= count else {}


def enough(agent: Supervised, cycle: int) -> bool:
    kills = agent.kills()
    return cycle >= CYCLES_MAX or (
        cycle >= CYCLES_MIN and sum(kills.values()) >= KILLS_MIN and all(kills[p] for p in POINTS)
    )


def test_kills_at_every_point_pay_each_batch_once(
    bootstrap: str, state: Path, codec: SingleObjectCodec
) -> None:
    done = clearing(bootstrap, state, "settle", "--rail", RAIL, "--deploy")
    assert done.returncode == 0, done.stderr
    client, settlement, token = deployed(state)
    before = {w: int(token.functions.balanceOf(a).call()) for w, a in ADDRESS.items()}
    rng = random.Random(17)
    agent = Supervised(bootstrap, state)
    t0 = time.monotonic()
    try:
        with worker(bootstrap, state, role="ingest,netting,acks"):
            cycle = 0
            while not enough(agent, cycle):
                cycle += 1
                agent.keep_running()
                # each with its own reference: one obligation per payment, by its id
                sent = [payment(f"k{cycle}-{n}", *rng.sample(PARTIES, 2), "OM_FEE",
                                rng.randrange(1_000, 90_000), reference=f"INV-{cycle}-{n}")
                        for n in range(3)]  # fmt: skip
                send_events(bootstrap, codec, "payment", sent)
                wait_for_carried(bootstrap, codec, [e["event_id"] for e in sent])
                close_cycle(bootstrap, state, "CNH")
            stable = wait_until("every token batch", lambda: all_batches(bootstrap, codec, cycle))
            expected = sum(b["instruction_count"] for b in stable.values())

            def all_acked() -> bool:
                agent.keep_running()
                return sum(len(acks(bootstrap, codec, b)) for b in stable) >= expected

            wait_until("an ack for every instruction", all_acked, timeout_seconds=600)
    finally:
        if agent.process is not None:
            stop_process(agent.process)
    seconds = time.monotonic() - t0
    kills = agent.kills()
    print(
        f"settle chaos: {sum(kills.values())} kills {dict(kills)}, {agent.starts} starts, "
        f"{len(stable)} batches, {expected} instructions, {seconds:.0f} s"
    )
    assert sum(kills.values()) >= KILLS_MIN, kills
    assert all(kills[p] >= 1 for p in POINTS), kills
    # every batch paid exactly once, by the chain's own record
    keys = settled_keys(client, settlement)
    assert set(keys) == {call_key(b, 0) for b in stable}
    assert set(keys.values()) == {1}
    # exactly one final acknowledgement per instruction
    acked = Counter(a["instruction_id"] for b in stable for a in acks(bootstrap, codec, b))
    instructions = [i["instruction_id"] for b in stable.values() for i in b["instructions"]]
    assert sorted(acked) == sorted(instructions)
    assert set(acked.values()) == {1}
    # balances moved by exactly the instructions (all settled: everyone is funded)
    moved: Counter[str] = Counter()
    for batch in stable.values():
        for i in batch["instructions"]:
            moved[i["payer_id"]] -= i["amount_rail_units"]
            moved[i["payee_id"]] += i["amount_rail_units"]
    after = {w: int(token.functions.balanceOf(a).call()) for w, a in ADDRESS.items()}
    assert {w: after[w] - before[w] for w in after} == {w: moved[w] for w in after}
    assert all(v % UNITS_PER_FEN == 0 for v in moved.values())
