"""Settling through a real JSON-RPC node process from npm (ganache, installed by
``make ganache``) with ``clearing settle --rpc-url``: the same agent, contracts and
checks as on the embedded chain, against another implementation of the protocol
and the EVM.

A module-scoped broker of its own: the agent uses the contract's fixed topics and
consumer groups.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.refdata import load_refdata
from clearing_services.chain.client import ChainClient, ChainError
from clearing_services.chain.contracts import TOKEN, compiled
from clearing_services.chain.deploy import rail_contracts
from clearing_services.chain.node import dev_key
from tests.services.settlement.test_token_settlement import ADDRESS, UNITS_PER_FEN, wait_for_acks
from tests.support.brokers import free_port
from tests.support.chains import CACHE, GANACHE_CHAIN_ID, start_ganache
from tests.support.events import payment
from tests.support.pipeline import (
    CLEARING,
    REFDATA_FILE,
    REPO,
    close_cycle,
    env,
    send_events,
    stop_process,
    wait_for_carried,
    worker,
)

pytestmark = pytest.mark.own_broker
RAIL = "cnh-stable"
SOLAR, LEASECO, DC = "SOLAR-QINGHAI-07", "LEASECO-HK-01", "DC-SHENZHEN-01"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    process = start_ganache(port, dev_key(0).to_bytes(), tmp_path_factory.mktemp("ganache") / "log")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def settle_env(bootstrap: str, state: Path) -> dict[str, str]:
    key_file = state / "operator.key"
    key_file.write_text(dev_key(0).to_bytes().hex())
    key_file.chmod(0o600)
    return {**env(bootstrap, state, worker_id="settle"), "CLEARING_CHAIN_KEY_FILE": str(key_file)}


def test_a_batch_settles_through_a_json_rpc_node_process(
    bootstrap: str, state: Path, codec: SingleObjectCodec, node: str
) -> None:
    settle = [*CLEARING, "settle", "--rail", RAIL, "--rpc-url", node]
    deployed = subprocess.run([*settle, "--deploy", "--json"], env=settle_env(bootstrap, state),
                              cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert deployed.returncode == 0, deployed.stderr
    assert json.loads(deployed.stdout)["funded"] == 3
    client = ChainClient(node, dev_key(0).to_bytes(), expected_chain_id=GANACHE_CHAIN_ID)
    contracts = rail_contracts(client, load_refdata(REFDATA_FILE).rails[RAIL], state / "chain")
    token = client.contract(contracts.token, compiled(TOKEN, CACHE))
    before = {w: int(token.functions.balanceOf(a).call()) for w, a in ADDRESS.items()}
    log = (state / "settle.log").open("w")
    agent = subprocess.Popen(settle, env=settle_env(bootstrap, state), cwd=REPO, stdout=log,
                             stderr=subprocess.STDOUT)  # fmt: skip
    try:
        with worker(bootstrap, state, role="ingest,netting,acks"):
            send_events(bootstrap, codec, "payment", [
                payment("g-1", LEASECO, SOLAR, "OM_FEE", 50_000),
                payment("g-2", DC, SOLAR, "OM_FEE", 30_000),
            ])  # fmt: skip
            wait_for_carried(bootstrap, codec, ["g-1", "g-2"])
            close_cycle(bootstrap, state, "CNH")
            acks = wait_for_acks(bootstrap, codec, "cnh-stable-CNH-00000001", 2)
    finally:
        stop_process(agent)
        log.close()
    assert sorted(a["status"] for a in acks) == ["SETTLED", "SETTLED"]
    assert {client.w3.eth.get_transaction_receipt(a["transaction_hash"])["blockNumber"]
            for a in acks} == {acks[0]["block_number"]}  # fmt: skip
    after = {w: int(token.functions.balanceOf(a).call()) for w, a in ADDRESS.items()}
    assert {w: after[w] - before[w] for w in after} == {
        SOLAR: 80_000 * UNITS_PER_FEN, LEASECO: -50_000 * UNITS_PER_FEN,
        "CLEARING_HOUSE": -30_000 * UNITS_PER_FEN}  # fmt: skip


def test_a_stuck_transaction_is_replaced_then_reported_not_waited_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A node that mines nothing for an hour: the client replaces the transaction at its
    nonce with higher fees three times, then ends with one line naming the nonce.
    (ganache 7.9 lists a replacement under the next nonce in its pool, where geth would
    replace; what the client sent is what this test checks.)"""
    port = free_port()
    node = start_ganache(port, dev_key(0).to_bytes(), tmp_path / "log", block_seconds=3_600)
    try:
        client = ChainClient(f"http://127.0.0.1:{port}", dev_key(0).to_bytes(),
                             receipt_wait_seconds=0.5)  # fmt: skip
        started = time.monotonic()
        with pytest.raises(ChainError, match=r"at nonce 0 of 0x\w+ not mined after 3 replacements"):
            client.send_value(ADDRESS[SOLAR], 1)
        assert time.monotonic() - started < 30
    finally:
        node.terminate()
        node.wait(timeout=30)
    replaced = [r.getMessage() for r in caplog.records if "replacing it" in r.getMessage()]
    assert len(replaced) == 3  # the first and its three replacements: four sent
    assert all("(nonce 0)" in line for line in replaced)
    assert len({line.split()[1] for line in replaced}) == 3  # each its own, at a higher fee
