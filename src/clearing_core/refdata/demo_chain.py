"""Chain keys of the demo reference data: derived from public phrases.

Why derived: the demo's participants must approve the settlement contract with
their own keys (that is what prefunding means), and the generated reference data
must name their addresses. Deriving both from a phrase per account keeps the
generator deterministic and the keys recoverable by the demo's faucet. They are
public, like ganache's and hardhat's dev accounts: never use them on a real chain.
"""

from __future__ import annotations

from eth_keys.datatypes import PrivateKey
from eth_utils.crypto import keccak


def demo_private_key(account_id: str) -> bytes:
    """The demo key of a participant or clearing-house account (32 bytes)."""
    return bytes(keccak(f"clearing-house demo account {account_id}".encode()))


def demo_address(account_id: str) -> str:
    """The EIP-55 address of ``demo_private_key(account_id)``."""
    return str(PrivateKey(demo_private_key(account_id)).public_key.to_checksum_address())


def house_key_name(rail_id: str) -> str:
    """The demo key name of the clearing house's address on a token rail."""
    return f"CLEARING_HOUSE/{rail_id}"
