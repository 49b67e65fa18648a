"""A token rail's side on the chain, resolved and checked before the agent reads a
batch: the node, the operator's key, the contracts, and who is who.

Every check here is a one-line error at start (wrong URL, wrong chain, no code or
other code at an address, a settlement contract whose operator is someone else),
rather than a failed batch later.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from web3.contract import Contract

from clearing_core.errors import InputError
from clearing_core.refdata import ReferenceData
from clearing_core.refdata.models import CHAIN_EMBEDDED, ExportFormat, Rail
from clearing_services.chain.client import ChainClient, ChainError, SenderLocks
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
    senders: SenderLocks | None = None,
) -> RailChain:
    """The rail's chain, checked; ``senders``: the nonce locks shared by the agents of
    this process (the rails of one operator sign with one key)."""
    rail = token_rail(refdata, rail_id)
    key = operator_key(settings, rail, rpc_url)
    client = ChainClient(chain_url(settings, rail, rpc_url), key, rail.chain_id, on_sent,
                         senders=senders)  # fmt: skip
    contracts = rail_contracts(client, rail, chain_home or settings.chain_home)
    settlement = client.contract(contracts.settlement, compiled(SETTLEMENT, settings.cache_dir))
    operator = str(settlement.functions.operator().call())
    if operator != client.address:
        raise ChainError(
            f"the settlement contract {contracts.settlement} takes batches from {operator}; "
            f"this agent signs as {client.address}"
        )
    token_address = settlement.functions.token().call()
    if str(token_address) != contracts.token:
        raise ChainError(f"the settlement contract {contracts.settlement} moves another token")
    token = client.w3.eth.contract(address=token_address,
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


def house_balances(settings: Settings, refdata: ReferenceData) -> list[dict[str, object]]:
    """The clearing house's token balance on each token rail, read from its chain (for
    the dashboard); a rail whose chain cannot be read says why instead."""
    out: list[dict[str, object]] = []
    for rail in sorted(refdata.rails.values(), key=lambda r: r.rail_id):
        if rail.export_format is not ExportFormat.TOKEN_BATCH or rail.chain is None:
            continue
        row: dict[str, object] = {"rail_id": rail.rail_id, "token": rail.token_symbol,
                                  "decimals": rail.decimals,
                                  "address": rail.clearing_house_address}  # fmt: skip
        try:
            reader = ChainClient(chain_url(settings, rail, None), os.urandom(32), rail.chain_id)
            contracts = rail_contracts(reader, rail, settings.chain_home)
            token = reader.w3.eth.contract(address=reader.w3.to_checksum_address(contracts.token),
                                           abi=compiled(TOKEN, settings.cache_dir).abi)  # fmt: skip
            # text: a JSON number loses precision in a browser above 2^53 token units
            row["balance_units"] = str(
                token.functions.balanceOf(rail.clearing_house_address).call()
            )
            row["block_number"] = int(reader.w3.eth.block_number)
        except ChainError as exc:  # not deployed, node down: the page says so
            row["error"] = str(exc)
        out.append(row)
    return out


def rail_balances(settings: Settings, refdata: ReferenceData, rail_id: str) -> dict[str, int]:
    """Account id -> token balance of every account on a token rail with an address:
    its participants and the clearing house."""
    rail = token_rail(refdata, rail_id)
    reader = ChainClient(chain_url(settings, rail, None), os.urandom(32), rail.chain_id)
    contracts = rail_contracts(reader, rail, settings.chain_home)
    token = reader.contract(contracts.token, compiled(TOKEN, settings.cache_dir))
    on_rail = {p for p, x in refdata.participants.items()
               if any(a.rail_id == rail_id for a in x.accounts)}  # fmt: skip
    addresses = {k: v for k, v in chain_addresses(refdata, rail).items()
                 if k in on_rail or k == rail.clearing_house_account}  # fmt: skip
    return {k: int(token.functions.balanceOf(v).call()) for k, v in sorted(addresses.items())}
