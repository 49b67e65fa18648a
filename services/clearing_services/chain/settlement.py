"""One settlement-contract call, executed at most once: ask the chain first, send
only what it has not recorded, and read every outcome back from the chain's logs.

Why read back even after our own receipt: the same code then serves a fresh call
and the reconciliation after a crash (a call sent by a process that died before it
wrote its acknowledgements), so the path taken after a crash is the path taken
every time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests
from web3.contract import Contract
from web3.exceptions import Web3Exception
from web3.types import EventData, FilterParams

from clearing_core.exports.token_calls import Inclusion, Outcome, TokenCall
from clearing_services.chain.client import ChainClient, ChainError, first_line

# A bound on a settle call's gas, so no estimate is needed: measured about 9,000 per
# instruction between funded accounts; a first payment to an account writes a new
# balance slot (20,000 more) and touches cold accounts. 256 instructions stay under
# a 30M block.
CALL_GAS_BASE = 100_000
CALL_GAS_PER_INSTRUCTION = 80_000


def call_gas(instructions: int) -> int:
    return CALL_GAS_BASE + CALL_GAS_PER_INSTRUCTION * instructions


@dataclass(frozen=True)
class Executed:
    """A call the chain has recorded, with its outcomes and where it was mined."""

    outcomes: list[Outcome]
    inclusion: Inclusion
    sent_now: bool  # False: recorded before this process asked (reconciled)
    gas_used: int | None = None


def executed(client: ChainClient, settlement: Contract, call: TokenCall) -> Executed | None:
    """The call's outcomes as the chain recorded them, or None if it never ran."""
    with chain_errors(client):
        return _executed(client, settlement, call)


@contextmanager
def chain_errors(client: ChainClient) -> Iterator[None]:
    """A node that does not answer (or answers nonsense) is one ChainError line."""
    try:
        yield
    except (requests.RequestException, Web3Exception, OSError) as exc:
        raise ChainError(f"the chain at {client.url} failed: {first_line(exc)}") from None


def _executed(client: ChainClient, settlement: Contract, call: TokenCall) -> Executed | None:
    block = int(settlement.functions.settled_block(call.key).call())
    if block == 0:
        return None
    events = (settlement.events.InstructionPaid(), settlement.events.InstructionFailed())
    topics: Any = [[e.topic for e in events], "0x" + call.key.hex()]
    query: FilterParams = {"address": settlement.address, "fromBlock": block, "toBlock": block,
                           "topics": topics}  # fmt: skip
    outcomes: list[Outcome] = []
    hashes: set[str] = set()
    for log in client.w3.eth.get_logs(query):
        paid = log["topics"][0].to_0x_hex() == events[0].topic
        data: EventData = (events[0] if paid else events[1]).process_log(log)
        args = data["args"]
        outcomes.append(Outcome(
            index=int(args["index"]), paid=paid, reason=0 if paid else int(args["reason"]),
            payer=str(args["payer"]), payee=str(args["payee"]), amount=int(args["amount"]),
        ))  # fmt: skip
        hashes.add(data["transactionHash"].to_0x_hex())
    if len(hashes) != 1:
        raise ChainError(
            f"{call.batch_id} part {call.part}: outcomes in {len(hashes)} transactions"
        )
    timestamp = int(client.w3.eth.get_block(block)["timestamp"])
    return Executed(outcomes, Inclusion(hashes.pop(), block, timestamp * 1000), sent_now=False)


def settle(client: ChainClient, settlement: Contract, call: TokenCall) -> Executed:
    """Execute ``call`` unless the chain has it already; its outcomes either way."""
    known = executed(client, settlement, call)
    if known is not None:
        return known
    function = settlement.functions.settle(
        call.key, list(call.payers), list(call.payees), list(call.amounts)
    )
    with chain_errors(client):
        sent = client.transact(function, gas=call_gas(len(call.amounts)))
    known = executed(client, settlement, call)
    if known is None:  # reverted, and nobody else recorded it either
        receipt = sent.receipt
        tx_hash = receipt["transactionHash"].to_0x_hex()
        raise ChainError(
            f"{call.batch_id} part {call.part}: transaction {tx_hash} reverted "
            f"(gas used {receipt['gasUsed']})"
        )
    return Executed(known.outcomes, known.inclusion, sent_now=True,
                    gas_used=int(sent.receipt["gasUsed"]))  # fmt: skip
