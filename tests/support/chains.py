"""The embedded chain node for tests: on a free port, its state in a temporary folder,
and a client that signs with the node's dev account 0."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from web3.contract import Contract

from clearing_services.chain.client import ChainClient
from clearing_services.chain.local import LocalChain, probe
from clearing_services.chain.node import dev_key
from tests.support.brokers import free_port

CACHE = Path(__file__).resolve().parents[2] / ".cache"  # compiled contracts, shared by runs


def start_chain(home: Path) -> LocalChain:
    node = LocalChain(home, free_port())
    node.start()
    return node


def operator(node: LocalChain) -> ChainClient:
    return ChainClient(node.url, dev_key(0).to_bytes())


GANACHE = Path(__file__).resolve().parents[2] / ".cache/ganache/node_modules/.bin/ganache"
GANACHE_CHAIN_ID = 1337
GANACHE_START_SECONDS = 60.0


def start_ganache(
    port: int, funded_key: bytes, log: Path, *, block_seconds: int = 0
) -> subprocess.Popen[bytes]:
    """A real JSON-RPC node from npm (``make ganache``), mining a block per transaction
    (or every ``block_seconds``), with ``funded_key``'s account holding gas money.
    Missing: the test fails, never skips."""
    if not GANACHE.exists():
        pytest.fail(f"{GANACHE} is missing: `make ganache` installs it (npm)", pytrace=False)
    command = [str(GANACHE), "--server.host", "127.0.0.1", "--server.port", str(port),
               "--chain.chainId", str(GANACHE_CHAIN_ID), "--chain.hardfork", "shanghai",
               "--wallet.accounts", f"0x{funded_key.hex()},{hex(10**24)}",
               "--logging.quiet", "--miner.blockTime", str(block_seconds)]  # fmt: skip
    with log.open("ab") as out:
        node = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + GANACHE_START_SECONDS
    while probe(f"http://127.0.0.1:{port}") is None:
        if node.poll() is not None or time.monotonic() > deadline:
            node.kill()
            pytest.fail(f"ganache did not answer on port {port}; see {log}", pytrace=False)
        time.sleep(0.2)
    return node


def deployed(state: Path, rail_id: str = "cnh-stable") -> tuple[ChainClient, Contract, Contract]:
    """The operator's client, the settlement contract and the token of a rail that
    ``clearing settle --deploy`` put on the embedded chain of a test's state folder."""
    from clearing_core.refdata import load_refdata
    from clearing_services.chain.contracts import SETTLEMENT, TOKEN, compiled
    from clearing_services.chain.deploy import rail_contracts
    from tests.support.pipeline import REFDATA_FILE, chain_port

    client = ChainClient(f"http://127.0.0.1:{chain_port(state)}", dev_key(0).to_bytes())
    contracts = rail_contracts(client, load_refdata(REFDATA_FILE).rails[rail_id], state / "chain")
    return (client, client.contract(contracts.settlement, compiled(SETTLEMENT, CACHE)),
            client.contract(contracts.token, compiled(TOKEN, CACHE)))  # fmt: skip
