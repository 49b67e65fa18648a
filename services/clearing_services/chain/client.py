"""Talking to an EVM chain over JSON-RPC: checks first, then transactions that are
either mined, or reported.

Why the checks: a wrong URL, a node on another chain or an address holding other
code would otherwise surface as a confusing failure deep in a settlement; each is
one line here, before anything is sent. Why the receipt deadline: a transaction
stuck in a node's pool must be reported (and replaced at the same nonce with a
higher fee), never waited on for ever.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractConstructor, ContractFunction
from web3.exceptions import (
    ContractLogicError,
    TransactionNotFound,
    Web3Exception,
    Web3RPCError,
)
from web3.types import TxReceipt

from clearing_core.errors import InputError
from clearing_services.chain.contracts import Compiled

RPC_TIMEOUT_SECONDS = 30.0
RECEIPT_WAIT_SECONDS = 30.0  # per attempt; a stuck transaction is then replaced
RECEIPT_POLL_SECONDS = 0.05
REPLACEMENTS_MAX = 3  # then the transaction is reported stuck and the agent ends
NONCE_RETRIES = 8  # a nonce another process of the same key took first
NONCE_BACKOFF_SECONDS = 0.02  # doubled per retry, jittered: the other sender goes first
GAS_MARGIN_PERCENT = 25  # over the node's estimate
FEE_BUMP_PERCENT = 25  # a replacement pays this much more (nodes require at least 10)
_log = logging.getLogger("clearing.chain")


class ChainError(InputError):
    """The chain cannot be used as configured, or a transaction did not go through."""

    reason_code = "CHAIN_ERROR"


class SenderLocks:
    """One lock per (node, sender): the agents of one process that sign with one key
    (the rails of one operator) take nonces one at a time: read the pending count,
    sign, hand over; else two read the same nonce and the node refuses one."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._lock = threading.Lock()

    def of(self, url: str, address: str) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault((url, address.lower()), threading.Lock())


@dataclass(frozen=True)
class Sent:
    """A mined transaction."""

    receipt: TxReceipt
    replacements: int


class ChainClient:
    """One node, one signing key (the clearing house's operator)."""

    def __init__(
        self,
        url: str,
        key: bytes,
        expected_chain_id: int | None = None,
        on_sent: Callable[[], None] | None = None,
        receipt_wait_seconds: float = RECEIPT_WAIT_SECONDS,
        senders: SenderLocks | None = None,
    ) -> None:
        """``on_sent``: called after each transaction is handed to the node, before its
        receipt is read (a chaos test's crash point); ``receipt_wait_seconds``: how long
        one attempt waits for its receipt before the transaction is replaced."""
        self.url = url
        self.on_sent = on_sent
        self.receipt_wait_seconds = receipt_wait_seconds
        self.senders = senders or SenderLocks()
        provider = Web3.HTTPProvider(url, request_kwargs={"timeout": RPC_TIMEOUT_SECONDS})
        self.w3 = Web3(provider)
        self.account: LocalAccount = Account.from_key(key)
        try:
            self.chain_id = int(self.w3.eth.chain_id)
        except (requests.RequestException, Web3Exception, OSError, ValueError) as exc:
            raise ChainError(f"no JSON-RPC node answers at {url}: {first_line(exc)}") from None
        if expected_chain_id is not None and self.chain_id != expected_chain_id:
            raise ChainError(
                f"{url} is chain {self.chain_id}, the rail expects chain {expected_chain_id}"
            )

    @property
    def address(self) -> str:
        return str(self.account.address)

    def contract(self, address: str, compiled: Compiled) -> Contract:
        """The contract at ``address``, after checking its code is ``compiled``'s (the
        code on chain is the runtime code followed by the constructor's immutables)."""
        code = bytes(self.w3.eth.get_code(Web3.to_checksum_address(address)))
        if not code:
            raise ChainError(f"no contract at {address} on chain {self.chain_id} ({self.url})")
        if not code.startswith(compiled.runtime):
            raise ChainError(
                f"the code at {address} is not contracts/{compiled.name}.vy as compiled here"
            )
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=compiled.abi)

    def deploy(self, compiled: Compiled, *args: Any) -> str:
        """Deploy ``compiled`` with constructor ``args``; its address."""
        factory = self.w3.eth.contract(abi=compiled.abi, bytecode=compiled.bytecode)
        sent = self.transact(factory.constructor(*args))
        address = sent.receipt["contractAddress"]
        if sent.receipt["status"] != 1 or address is None:
            raise ChainError(f"deploying {compiled.name} reverted")
        return str(address)

    def transact(
        self,
        call: ContractFunction | ContractConstructor,
        signer: LocalAccount | None = None,
        gas: int | None = None,
    ) -> Sent:
        """Build ``call``, then ``send`` it. ``gas``: the limit, where the caller knows a
        bound (the node's estimate runs the call many times over: seconds for a batch)."""
        account = signer or self.account
        # the nonce to build with (an estimate checks it); ``send`` takes the sender's
        # next one again under its lock, where it counts
        nonce = self.w3.eth.get_transaction_count(account.address, "pending")
        fields: dict[str, Any] = {"from": account.address, "nonce": nonce, "chainId": self.chain_id}
        if gas is not None:
            fields["gas"] = gas
        try:
            tx = dict(call.build_transaction(fields))  # type: ignore[arg-type]
        except ContractLogicError as exc:
            raise ChainError(f"the call would revert: {first_line(exc)}") from None
        if gas is None:
            tx["gas"] = int(tx["gas"]) * (100 + GAS_MARGIN_PERCENT) // 100
        del tx["nonce"]
        return self.send(tx, account)

    def send_value(self, to: str, wei: int) -> Sent:
        """A plain transfer of ``wei`` from the operator (gas money)."""
        base_fee = int(self.w3.eth.get_block("latest").get("baseFeePerGas", 0))
        tip = int(self.w3.eth.max_priority_fee)
        tx = {"to": Web3.to_checksum_address(to), "value": wei, "gas": 21_000,
              "chainId": self.chain_id, "maxFeePerGas": 2 * base_fee + tip,
              "maxPriorityFeePerGas": tip}  # fmt: skip
        return self.send(tx, self.account)

    def send(self, tx: dict[str, Any], account: LocalAccount) -> Sent:
        """Take the sender's next nonce, sign, send and wait. A transaction not mined in
        time is replaced at its nonce with a higher fee up to REPLACEMENTS_MAX times
        (whichever of them is mined counts), then reported (ChainError); a nonce another
        process took first is taken again, up to NONCE_RETRIES times, each after a jittered
        wait: without it, the other process's next send can take every retry's nonce
        too, when both send without pause (seen under load)."""
        sent: list[HexBytes] = []
        replacements = retries = 0
        while True:
            refused = self._hand_over(tx, account, sent)
            if refused is not None:
                mined = self._receipt_of(sent, time.monotonic())
                if mined is not None:
                    return Sent(mined, replacements)
                if sent or "nonce" not in refused.lower() or retries >= NONCE_RETRIES:
                    raise ChainError(f"the node refused the transaction at nonce {tx['nonce']} "
                                     f"of {account.address}: {refused}")  # fmt: skip
                retries += 1
                del tx["nonce"]  # taken by another sender: the next one, after it
                time.sleep(random.uniform(0, NONCE_BACKOFF_SECONDS * 2**retries))
                continue
            if self.on_sent is not None:
                self.on_sent()
            receipt = self._receipt_of(sent, time.monotonic() + self.receipt_wait_seconds)
            if receipt is not None:
                return Sent(receipt, replacements)
            if replacements == REPLACEMENTS_MAX:
                raise ChainError(
                    f"transaction at nonce {tx['nonce']} of {account.address} not mined after "
                    f"{REPLACEMENTS_MAX} replacements ({self.url}): the node's pool is stuck"
                )
            _log.warning("transaction %s (nonce %d) not mined in %.1f s: replacing it",
                         sent[-1].to_0x_hex(), tx["nonce"], self.receipt_wait_seconds)  # fmt: skip
            replacements += 1
            tx.update(_bumped(tx))

    def _hand_over(
        self, tx: dict[str, Any], account: LocalAccount, sent: list[HexBytes]
    ) -> str | None:
        """Sign ``tx`` (with the sender's next nonce if it has none yet) and hand it to
        the node, under the sender's lock; the node's refusal, if any."""
        with self.senders.of(self.url, account.address):
            if "nonce" not in tx:
                tx["nonce"] = self.w3.eth.get_transaction_count(account.address, "pending")
            signed = account.sign_transaction(tx)
            try:
                sent.append(self.w3.eth.send_raw_transaction(signed.raw_transaction))
            except (Web3RPCError, ValueError) as exc:
                return first_line(exc)
        return None

    def _receipt_of(self, hashes: list[HexBytes], deadline: float) -> TxReceipt | None:
        """The receipt of whichever of ``hashes`` is mined, asked until ``deadline``."""
        while True:
            for tx_hash in hashes:
                try:
                    return self.w3.eth.get_transaction_receipt(tx_hash)
                except TransactionNotFound:
                    continue
            if time.monotonic() >= deadline:
                return None
            time.sleep(RECEIPT_POLL_SECONDS)


def _bumped(tx: dict[str, Any]) -> dict[str, Any]:
    out = dict(tx)
    for field in ("maxFeePerGas", "maxPriorityFeePerGas", "gasPrice"):
        if field in out:
            out[field] = int(out[field]) * (100 + FEE_BUMP_PERCENT) // 100
    return out


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
