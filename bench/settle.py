"""Benchmark of token-rail settlement on the embedded chain, and of the agent's recovery.

Part 1, the chain: a fresh embedded chain node (py-evm behind JSON-RPC, as
``clearing chain start`` runs it), the rail's contracts, ``--accounts`` prefunded
demo accounts; then ``--calls`` settlement calls of each batch size in
``--sizes`` between random funded accounts, through the agent's own code
(``chain.settlement.settle``: ask the contract, send, read the outcomes back
from the logs). Per size: batches/s, instructions/s and gas per instruction,
beside the baseline measured in the same run: one ERC-20 ``transferFrom`` per
instruction (``ratio_vs_transfers``).

Part 2, recovery: a broker of its own, the default reference data, and one batch
on ``clearing.settlement.batches.cnh-stable`` at a time; ``clearing settle`` is
killed by SIGKILL right after it sends the batch's call (``CLEARING_FAULTS=
after_submit=1``), then started again; the time from that start to the batch's
acknowledgements on ``clearing.settlement.acks`` is the recovery (process start,
chain and Kafka connections, the group's assignment, reconciling from the logs,
the transaction). ``--kills`` rounds; the median and the worst.

Last line of stdout: one JSON object. Run: ``.venv/bin/python bench/settle.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from e2e_support import free_port, own_broker

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.encoding.schemas import SchemaCatalog
from clearing_core.exports.token_calls import TokenCall, call_key
from clearing_core.refdata import load_default_refdata
from clearing_core.refdata.demo_chain import demo_address, demo_private_key
from clearing_services.chain.client import ChainClient
from clearing_services.chain.contracts import TOKEN, compiled
from clearing_services.chain.deploy import Funding, deploy_rail, prefund
from clearing_services.chain.local import LocalChain
from clearing_services.chain.node import dev_key
from clearing_services.chain.settlement import settle
from clearing_services.kafka.clients import produce_all, producer_config, read_topic
from clearing_services.kafka.refdata import publish_refdata
from clearing_services.kafka.topics import ACKS_TOPIC, batch_topic, create_topics, load_topic_plan

RAIL = "cnh-stable"
FUNDED_UNITS = 10**20
RECOVERY_WAIT_SECONDS = 120.0
POLL_SECONDS = 0.1


def log(message: str) -> None:
    print(f"[settle] {message}", file=sys.stderr, flush=True)


def chain_part(home: Path, cache: Path, args: argparse.Namespace) -> dict[str, Any]:
    node = LocalChain(home / "chain", free_port())
    node.start()
    try:
        client = ChainClient(node.url, dev_key(0).to_bytes())
        rail = load_default_refdata().rails[RAIL]
        contracts = deploy_rail(client, rail, cache, node.home)
        names = [f"BENCH-{n:03d}" for n in range(args.accounts)]
        prefund(client, contracts, cache, [Funding(n, FUNDED_UNITS) for n in names])
        settlement = client.contract(contracts.settlement, compiled("Settlement", cache))
        token = client.contract(contracts.token, compiled(TOKEN, cache))
        rng = random.Random(7)
        out: dict[str, Any] = {"transfers": _transfers(client, token, names, rng, args.calls)}
        for size in args.sizes:
            out[f"batch_{size}"] = _batches(client, settlement, names, rng, size, args.calls)
            ratio = out[f"batch_{size}"]["instructions_per_s"] / out["transfers"]["per_s"]
            out[f"batch_{size}"]["ratio_vs_transfers"] = round(ratio, 2)
            log(f"batch of {size}: {out[f'batch_{size}']}")
        return out
    finally:
        node.stop()


def _transfers(
    client: ChainClient, token: Any, names: list[str], rng: random.Random, count: int
) -> dict[str, float]:
    """The baseline: one signed ERC-20 transfer per instruction, each waited on."""
    from eth_account import Account

    started, gas = time.perf_counter(), 0
    for _ in range(count):
        payer, payee = rng.sample(names, 2)
        holder = Account.from_key(demo_private_key(payer))
        sent = client.transact(token.functions.transfer(demo_address(payee), 1), signer=holder,
                               gas=120_000)  # fmt: skip
        gas += int(sent.receipt["gasUsed"])
    seconds = time.perf_counter() - started
    return {"per_s": round(count / seconds, 1), "gas_per_transfer": gas // count}


def _batches(
    client: ChainClient, settlement: Any, names: list[str], rng: random.Random, size: int,
    calls: int,
) -> dict[str, float]:  # fmt: skip
    started, gas = time.perf_counter(), 0
    for n in range(calls):
        batch_id = f"bench-{size}-{n}-{rng.random()}"
        pairs = [rng.sample(names, 2) for _ in range(size)]
        call = TokenCall(batch_id, 0, call_key(batch_id, 0), tuple(f"{batch_id}-{i}" for i in
                         range(size)), tuple(demo_address(p) for p, _ in pairs),
                         tuple(demo_address(q) for _, q in pairs), (10_000,) * size)  # fmt: skip
        done = settle(client, settlement, call)
        assert done.sent_now
        assert all(o.paid for o in done.outcomes)
        gas += int(done.gas_used or 0)
    seconds = time.perf_counter() - started
    return {"batches_per_s": round(calls / seconds, 2),
            "instructions_per_s": round(calls * size / seconds, 1),
            "gas_per_instruction": gas // (calls * size)}  # fmt: skip


def recovery_part(home: Path, args: argparse.Namespace) -> dict[str, Any]:
    codec = SingleObjectCodec(SchemaCatalog.load())
    refdata = load_default_refdata()
    with own_broker(home / "broker") as bootstrap:
        create_topics(_admin(bootstrap), load_topic_plan().for_rails(refdata.rails))
        publish_refdata(bootstrap, codec, refdata, by="bench-settle")
        env = {**os.environ, "KAFKA_BOOTSTRAP": bootstrap, "CLEARING_STATE_DIR": str(home),
               "CLEARING_CHAIN_PORT": str(free_port()), "CLEARING_WORKER_ID": "bench"}  # fmt: skip
        deploy = [
            sys.executable,
            "-m",
            "clearing_services.cli",
            "settle",
            "--rail",
            RAIL,
            "--deploy",
        ]
        subprocess.run(deploy, env=env, check=True, capture_output=True, timeout=600)
        seconds = [_recover_once(bootstrap, codec, refdata, env, n)
                   for n in range(1, args.kills + 1)]  # fmt: skip
        LocalChain(home / "chain", int(env["CLEARING_CHAIN_PORT"])).stop()
    return {"kills": len(seconds), "recovery_seconds_median": round(statistics.median(seconds), 2),
            "recovery_seconds_max": round(max(seconds), 2)}  # fmt: skip


def _recover_once(
    bootstrap: str, codec: SingleObjectCodec, refdata: Any, env: dict[str, str], n: int
) -> float:
    """One batch, an agent killed right after sending its call, and the time the next
    agent takes from its start to the batch's acknowledgements."""
    clearing = [sys.executable, "-m", "clearing_services.cli", "settle", "--rail", RAIL]
    batch = _batch(refdata, n)
    value = codec.encode("SettlementBatch", batch)
    produce_all(Producer(producer_config(bootstrap)), batch_topic(RAIL),
                [(batch["batch_id"].encode(), value)])  # fmt: skip
    dying_env = {**env, "CLEARING_FAULTS": "after_submit=1"}
    dying = subprocess.run(clearing, capture_output=True, env=dying_env, timeout=300)
    assert dying.returncode == -9, dying.stderr[-2000:]
    started = time.perf_counter()
    quiet = subprocess.DEVNULL
    agent = subprocess.Popen(clearing, env=env, stdout=quiet, stderr=quiet)
    try:
        _wait_for_acks(bootstrap, codec, batch["batch_id"], batch["instruction_count"])
        seconds = time.perf_counter() - started
    finally:
        agent.terminate()
        agent.wait(timeout=60)
    log(f"kill {n}: recovered in {seconds:.2f} s")
    return seconds


def _admin(bootstrap: str) -> Any:
    from clearing_services.kafka.clients import admin_client

    return admin_client(bootstrap)


def _batch(refdata: Any, n: int) -> dict[str, Any]:
    """A batch of two instructions between funded demo participants of the rail."""
    from clearing_core import ids

    payers = sorted(p for p, x in refdata.participants.items() if x.active and
                    any(a.rail_id == RAIL for a in x.accounts))[:3]  # fmt: skip
    batch_id = f"{RAIL}-CNH-bench-{n}-{time.time_ns()}"
    instructions = []
    for seq, (payer, payee) in enumerate([(payers[0], payers[1]), (payers[2], payers[1])], 1):
        instruction_id = f"{batch_id}-{seq:06d}"
        instructions.append({
            "instruction_id": instruction_id, "sequence": seq, "payer_id": payer,
            "payee_id": payee, "payer_bic": None, "payer_lei": None, "payee_bic": None,
            "payee_lei": None, "amount_minor": 100, "amount_rail_units": 1_000_000,
            "end_to_end_id": ids.end_to_end_id(instruction_id), "uetr": ids.uetr(instruction_id),
        })  # fmt: skip
    return {
        "batch_id": batch_id, "rail_id": RAIL, "currency": "CNH", "iso_currency": "CNY",
        "cycle_seq": n, "cycle_id": f"CNH-bench-{n}", "model": "DIRECT",
        "export_format": "TOKEN_BATCH", "currency_exponent": 2, "rail_decimals": 6,
        "token_symbol": "CNHT", "created_at": datetime.now(UTC), "instructions": instructions,
        "instruction_count": 2, "control_sum_minor": 200, "control_sum_rail_units": 2_000_000,
    }  # fmt: skip


def _wait_for_acks(bootstrap: str, codec: SingleObjectCodec, batch_id: str, count: int) -> None:
    deadline = time.monotonic() + RECOVERY_WAIT_SECONDS
    while time.monotonic() < deadline:
        records = read_topic(bootstrap, ACKS_TOPIC, f"bench-acks-{time.time_ns()}")
        acked = [r for r in records if codec.decode(r.value).record["batch_id"] == batch_id]
        if len(acked) >= count:
            assert len(acked) == count, f"{len(acked)} acks for {count} instructions"
            return
        time.sleep(POLL_SECONDS)
    raise TimeoutError(f"no acks for {batch_id} in {RECOVERY_WAIT_SECONDS:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=32)
    parser.add_argument("--calls", type=int, default=20, help="calls per batch size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--kills", type=int, default=5)
    args = parser.parse_args()
    cache = Path(__file__).resolve().parents[1] / ".cache"
    with tempfile.TemporaryDirectory(prefix="bench-settle-") as tmp:
        result = {"chain": chain_part(Path(tmp), cache, args)}
        result["recovery"] = recovery_part(Path(tmp) / "recovery", args) if args.kills else {}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
