"""The embedded chain node for tests: on a free port, its state in a temporary folder,
and a client that signs with the node's dev account 0."""

from __future__ import annotations

from pathlib import Path

from clearing_services.chain.client import ChainClient
from clearing_services.chain.local import LocalChain
from clearing_services.chain.node import dev_key
from tests.support.brokers import free_port

CACHE = Path(__file__).resolve().parents[2] / ".cache"  # compiled contracts, shared by runs


def start_chain(home: Path) -> LocalChain:
    node = LocalChain(home, free_port())
    node.start()
    return node


def operator(node: LocalChain) -> ChainClient:
    return ChainClient(node.url, dev_key(0).to_bytes())
