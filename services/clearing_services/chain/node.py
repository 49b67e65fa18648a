"""The embedded chain: py-evm through eth-tester, on disk, answering Ethereum JSON-RPC.

Why a node of its own and not an EVM inside the agent: the chain must outlive the
settlement agent (a kill -9 of the agent is the crash the design is tested
against), and other processes (the dashboard, ``clearing cycles``, a participant
with any Ethereum tool) must read it. So the embedded chain runs as a local
process like the broker, and the agent talks JSON-RPC to it exactly as it would
to a real node: one code path for both.

The request and result shapes are web3.py's own mapping between JSON-RPC and
eth-tester (the formatters its tester provider uses); this module adds the wire
encoding (quantities as hex) and the persistent database.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from eth.chains.base import MiningChain
from eth.db.chain import ChainDB
from eth.exceptions import CanonicalHeadNotFound
from eth.vm.forks.prague import PragueVM
from eth_keys.datatypes import PrivateKey
from eth_tester import EthereumTester
from eth_tester.backends.pyevm.main import (
    PyEVMBackend,
    generate_genesis_state_for_keys,
    get_default_genesis_params,
)
from eth_tester.exceptions import TransactionFailed
from eth_typing import BlockNumber
from eth_utils.crypto import keccak
from web3.providers.eth_tester.defaults import API_ENDPOINTS
from web3.providers.eth_tester.middleware import request_formatters, result_formatters

from clearing_services.chain.store import RocksChainDB

# The id web3's tester endpoints answer to eth_chainId; transactions are signed for it.
EMBEDDED_CHAIN_ID = 131_277_322_940_537
DEV_ACCOUNTS = 4
DEV_BALANCE_WEI = 10**30  # gas money for the operator and the demo participants
GAS_LIMIT_PER_BLOCK = 30_000_000
CALLS_WITH_SENDER = frozenset({"eth_call", "eth_estimateGas", "eth_createAccessList"})
RPC_METHOD_NOT_FOUND = -32601
RPC_INVALID_PARAMS = -32602
RPC_SERVER_ERROR = -32000
RPC_EXECUTION_REVERTED = 3  # the code geth uses for a reverted call


def dev_key(index: int) -> PrivateKey:
    """Dev account ``index`` of the embedded chain: a key derived from a public
    phrase, funded at genesis. Public on purpose, like ganache's and hardhat's dev
    accounts; never use one on a real chain."""
    return PrivateKey(keccak(f"clearing-house embedded chain dev account {index}".encode()))


class _Chain(MiningChain):
    chain_id = EMBEDDED_CHAIN_ID
    vm_configuration = ((BlockNumber(0), PragueVM),)

    def create_header_from_parent(self, parent_header: Any, **header_params: Any) -> Any:
        header_params["gas_limit"] = parent_header.gas_limit  # no drift: a fixed block size
        return super().create_header_from_parent(parent_header, **header_params)

    def get_transaction_builder(self) -> Any:
        return self.get_vm().get_transaction_builder()


class _DiskBackend(PyEVMBackend):  # type: ignore[misc]
    """eth-tester's py-evm backend, opening the chain kept in ``db`` (or its genesis)."""

    def __init__(self, db: RocksChainDB) -> None:
        self._db = db
        super().__init__()

    def reset_to_genesis(self, *_: Any, **__: Any) -> None:
        self.account_keys = tuple(dev_key(i) for i in range(DEV_ACCOUNTS))
        try:
            ChainDB(self._db).get_canonical_head()
        except CanonicalHeadNotFound:
            params = get_default_genesis_params({"gas_limit": GAS_LIMIT_PER_BLOCK})
            state = generate_genesis_state_for_keys(
                self.account_keys, overrides={"balance": DEV_BALANCE_WEI}
            )
            self.chain = _Chain.from_genesis(self._db, params, state)
        else:
            self.chain = _Chain(self._db)


@dataclass(frozen=True)
class RpcError(Exception):
    """A JSON-RPC error answer."""

    code: int
    message: str
    data: str | None = None


def wire(value: Any) -> Any:
    """A result in JSON-RPC's encoding: quantities as 0x hex, bytes as 0x hex."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, Mapping):
        return {str(k): wire(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [wire(v) for v in value]
    raise TypeError(f"cannot encode {type(value).__name__} for JSON-RPC")


class EmbeddedChain:
    """One chain on disk; requests are served one at a time (py-evm is not
    thread-safe, and a block is mined per transaction)."""

    def __init__(self, path: Path) -> None:
        self.db = RocksChainDB(path)
        self.tester = EthereumTester(backend=_DiskBackend(self.db), auto_mine_transactions=True)
        self._lock = threading.Lock()
        self._caller = dev_key(DEV_ACCOUNTS - 1).public_key.to_checksum_address()

    def request(self, method: str, params: list[Any]) -> Any:
        namespace, _, endpoint = method.partition("_")
        handler = API_ENDPOINTS.get(namespace, {}).get(endpoint)
        if handler is None:
            raise RpcError(RPC_METHOD_NOT_FOUND, f"the method {method} does not exist")
        shape_in = cast(Callable[[Any], Any], request_formatters.get(method) or _same)  # type: ignore[call-overload]
        shape_out = cast(Callable[[Any], Any], (result_formatters or {}).get(method) or _same)  # type: ignore[call-overload]
        if method in CALLS_WITH_SENDER and params and isinstance(params[0], dict):
            # geth defaults the sender to the zero address and the gas price to 0; the
            # tester charges gas even for a call, so a funded dev account stands in.
            params = [{"from": self._caller, **params[0]}, *params[1:]]
        with self._lock:
            try:
                result = handler(self.tester, shape_in(params))
            except TransactionFailed as exc:
                raise RpcError(RPC_EXECUTION_REVERTED, _revert_message(exc)) from None
            except NotImplementedError:
                raise RpcError(RPC_METHOD_NOT_FOUND, f"{method} is not implemented") from None
            except (ValueError, TypeError, KeyError) as exc:
                raise RpcError(RPC_INVALID_PARAMS, f"{method}: {exc}") from None
            except Exception as exc:
                raise RpcError(RPC_SERVER_ERROR, f"{method}: {type(exc).__name__}: {exc}") from None
        return wire(shape_out(result))

    def close(self) -> None:
        self.db.close()


def _same(value: Any) -> Any:
    return value


def _revert_message(exc: TransactionFailed) -> str:
    """``execution reverted: <reason>``, the message web3 and ethers recognise."""
    first = exc.args[0] if exc.args else ""
    if isinstance(first, Exception) and first.args:
        first = first.args[0]
    if isinstance(first, bytes) and len(first) > 4:
        from eth_abi.abi import decode

        try:
            first = decode(["string"], first[4:])[0]
        except Exception:
            first = "0x" + first.hex()
    return f"execution reverted: {first}"
