"""A token rail's contracts on a chain: deployed, recorded, found again, and (on the
embedded chain) the demo participants' prefunding.

Why a record: on the embedded chain the reference data does not name the
contracts (they exist only once ``clearing settle --deploy`` ran), so the
addresses are kept beside the chain, under its genesis hash: a chain started
afresh has other contracts, and a stale record is never used.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account
from web3 import Web3

from clearing_core.refdata.demo_chain import demo_address, demo_private_key
from clearing_core.refdata.models import CHAIN_EMBEDDED, Rail
from clearing_services.chain.client import ChainClient, ChainError
from clearing_services.chain.contracts import SETTLEMENT, TOKEN, compiled

UNLIMITED = 2**256 - 1  # an ERC-20 approval without a limit
GAS_MONEY_WEI = 10**18  # what each demo account gets to pay for its approval
DEPLOYMENTS_FILE = "deployments.json"
TOKEN_CALL_GAS = 120_000  # a mint or an approval: about 50,000 at most


class NotDeployedError(ChainError):
    """The rail has no contracts on this chain yet."""


@dataclass(frozen=True)
class RailContracts:
    token: str
    settlement: str


def _genesis(client: ChainClient) -> str:
    return str(client.w3.eth.get_block(0)["hash"].to_0x_hex())


def _record_path(chain_home: Path) -> Path:
    return chain_home / DEPLOYMENTS_FILE


def _records(chain_home: Path) -> dict[str, dict[str, str]]:
    try:
        data = json.loads(_record_path(chain_home).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def deploy_rail(
    client: ChainClient, rail: Rail, cache_dir: Path, chain_home: Path
) -> RailContracts:
    """The token (the clearing house mints it on the embedded chain) and the settlement
    contract, with this client's key as its operator; recorded under the genesis hash."""
    assert rail.token_symbol is not None
    token = client.deploy(compiled(TOKEN, cache_dir), f"{rail.name}"[:64], rail.token_symbol,
                          rail.decimals)  # fmt: skip
    settlement = client.deploy(compiled(SETTLEMENT, cache_dir), token, client.address)
    records = _records(chain_home)
    records[f"{_genesis(client)}/{rail.rail_id}"] = {
        "token": token,
        "settlement": settlement,
        "url": client.url,
    }
    chain_home.mkdir(parents=True, exist_ok=True)
    temporary = _record_path(chain_home).with_suffix(".tmp")
    temporary.write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")
    temporary.replace(_record_path(chain_home))
    return RailContracts(token, settlement)


def recorded(chain_home: Path, rail_id: str, url: str) -> bool:
    """Whether ``--deploy`` recorded contracts for the rail on the node at ``url`` (a
    hint read without asking the node; ``rail_contracts`` checks the chain's genesis)."""
    return any(key.endswith(f"/{rail_id}") and entry.get("url") == url
               for key, entry in _records(chain_home).items())  # fmt: skip


def rail_contracts(client: ChainClient, rail: Rail, chain_home: Path) -> RailContracts:
    """The rail's contracts: as the reference data names them, else as recorded by
    ``--deploy`` on this embedded chain."""
    if rail.token_address and rail.settlement_address:
        return RailContracts(rail.token_address, rail.settlement_address)
    recorded = _records(chain_home).get(f"{_genesis(client)}/{rail.rail_id}")
    if rail.chain != CHAIN_EMBEDDED or recorded is None:
        raise NotDeployedError(
            f"rail {rail.rail_id} has no settlement contract on chain {client.chain_id}: "
            f"run `clearing settle --rail {rail.rail_id} --deploy`, or name token_address "
            "and settlement_address in the reference data"
        )
    return RailContracts(recorded["token"], recorded["settlement"])


@dataclass(frozen=True)
class Funding:
    """What one demo account (a participant or clearing-house key name) is given: tokens
    minted to it, and its allowance to the settlement contract (0: withdrawn)."""

    account: str
    tokens: int
    allowance: int = UNLIMITED


def prefund(
    client: ChainClient, contracts: RailContracts, cache_dir: Path, accounts: Iterable[Funding]
) -> int:
    """Demo accounts get gas money, their tokens and set their allowance to the
    settlement contract with their own demo keys: the prefunding a real participant
    does itself. Returns the accounts done."""
    token = client.contract(contracts.token, compiled(TOKEN, cache_dir))
    done = 0
    for funding in accounts:
        holder = Account.from_key(demo_private_key(funding.account))
        assert holder.address == demo_address(funding.account)
        _send_gas_money(client, holder.address)
        if funding.tokens > 0:
            client.transact(token.functions.mint(holder.address, funding.tokens),
                            gas=TOKEN_CALL_GAS)  # fmt: skip
        approve = token.functions.approve(contracts.settlement, funding.allowance)
        client.transact(approve, signer=holder, gas=TOKEN_CALL_GAS)
        done += 1
    return done


def _send_gas_money(client: ChainClient, address: str) -> None:
    if client.w3.eth.get_balance(Web3.to_checksum_address(address)) >= GAS_MONEY_WEI // 2:
        return
    if client.send_value(address, GAS_MONEY_WEI).receipt["status"] != 1:
        raise ChainError(f"gas money for {address} did not arrive")
