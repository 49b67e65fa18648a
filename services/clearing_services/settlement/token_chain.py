"""A token rail's side on the chain, resolved and checked before the agent reads a
batch: the node, the operator's key, the contracts, and who is who.

Every check here is a one-line error at start (wrong URL, wrong chain, no code or
other code at an address, a settlement contract whose operator is someone else),
rather than a failed batch later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from web3.contract import Contract

from clearing_core.errors import InputError
from clearing_core.refdata import ReferenceData
from clearing_core.refdata.models import CHAIN_EMBEDDED, ExportFormat, Rail
from clearing_services.chain.client import ChainClient, ChainError
from clearing_services.chain.contracts import SETTLEMENT, TOKEN, compiled
from clearing_services.chain.deploy import rail_contracts
from clearing_services.chain.node import dev_key
from clearing_services.settings import Settings


@dataclass(frozen=True)
class RailChain:
    rail: Rail
    client: ChainClient
    settlement: Contract
    token: Contract

    @property
    def bank_id(self) -> str:
        """Who acknowledges: the settlement contract that executed the instructions."""
        return str(self.settlement.address)


def token_rail(refdata: ReferenceData, rail_id: str) -> Rail:
    rail = refdata.rails.get(rail_id)
    if rail is None:
        raise InputError(f"unknown rail {rail_id!r} (rails: {', '.join(sorted(refdata.rails))})")
    if rail.export_format is not ExportFormat.TOKEN_BATCH:
        raise InputError(f"rail {rail_id} is a {rail.export_format} rail, not a token rail")
    return rail


def chain_url(settings: Settings, rail: Rail, rpc_url: str | None) -> str:
    if rpc_url:
        return rpc_url
    if rail.chain in (None, CHAIN_EMBEDDED):
        return settings.embedded_chain_url
    return str(rail.chain)


def operator_key(settings: Settings, rail: Rail, rpc_url: str | None) -> bytes:
    """CLEARING_CHAIN_KEY_FILE's key; on the embedded chain its dev account 0."""
    if settings.chain_key_file is not None:
        try:
            text = settings.chain_key_file.read_text().strip().removeprefix("0x")
            key = bytes.fromhex(text)
        except (OSError, ValueError) as exc:
            raise InputError(f"CLEARING_CHAIN_KEY_FILE: cannot read a hex key ({exc})") from None
        if len(key) != 32:
            raise InputError("CLEARING_CHAIN_KEY_FILE: a private key is 32 bytes (64 hex digits)")
        return key
    if rail.chain in (None, CHAIN_EMBEDDED) and rpc_url is None:
        return dev_key(0).to_bytes()
    raise InputError(
        f"rail {rail.rail_id} settles on {rpc_url or rail.chain}: set CLEARING_CHAIN_KEY_FILE "
        "to the operator's private key (hex)"
    )


def connect(
    settings: Settings,
    refdata: ReferenceData,
    rail_id: str,
    rpc_url: str | None = None,
    on_sent: Callable[[], None] | None = None,
    chain_home: Path | None = None,
) -> RailChain:
    rail = token_rail(refdata, rail_id)
    key = operator_key(settings, rail, rpc_url)
    client = ChainClient(chain_url(settings, rail, rpc_url), key, rail.chain_id, on_sent)
    contracts = rail_contracts(client, rail, chain_home or settings.chain_home)
    settlement = client.contract(contracts.settlement, compiled(SETTLEMENT, settings.cache_dir))
    operator = str(settlement.functions.operator().call())
    if operator != client.address:
        raise ChainError(
            f"the settlement contract {contracts.settlement} takes batches from {operator}; "
            f"this agent signs as {client.address}"
        )
    if str(settlement.functions.token().call()) != contracts.token:
        raise ChainError(f"the settlement contract {contracts.settlement} moves another token")
    token = client.w3.eth.contract(address=settlement.functions.token().call(),
                                   abi=compiled(TOKEN, settings.cache_dir).abi)  # fmt: skip
    decimals = int(token.functions.decimals().call())
    if decimals != rail.decimals:
        raise ChainError(f"the token has {decimals} decimals, rail {rail_id} {rail.decimals}")
    return RailChain(rail, client, settlement, token)


def chain_addresses(refdata: ReferenceData, rail: Rail) -> dict[str, str]:
    """Account id -> chain address: the participants, and the rail's clearing house."""
    out = {p: str(x.chain_address) for p, x in refdata.participants.items() if x.chain_address}
    if rail.clearing_house_address is not None:
        out[rail.clearing_house_account] = rail.clearing_house_address
    return out
