"""Setting a token rail up on its chain: the contracts deployed once, and on the
embedded chain the demo accounts prefunded (tokens, gas money, an approval of the
settlement contract), some deliberately short so failures and carries show.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from clearing_core.encoding.codec import Codec
from clearing_core.refdata import ReferenceData
from clearing_core.refdata.demo_chain import demo_address, house_key_name
from clearing_core.refdata.models import CHAIN_EMBEDDED, ExportFormat, Rail
from clearing_services.chain.client import ChainClient, ChainError, SenderLocks
from clearing_services.chain.contracts import TOKEN, compiled
from clearing_services.chain.deploy import (
    Funding,
    NotDeployedError,
    RailContracts,
    deploy_rail,
    prefund,
    rail_contracts,
    recorded,
)
from clearing_services.chain.local import LocalChain
from clearing_services.faults import Faults
from clearing_services.kafka.refdata import RefdataHolder
from clearing_services.runtime.metrics import Metrics
from clearing_services.settings import Settings
from clearing_services.settlement.token_agent import TokenSettlementAgent
from clearing_services.settlement.token_chain import (
    RailChain,
    chain_url,
    connect,
    operator_key,
    token_rail,
)

DEMO_FUNDING_MINOR = 10**10  # 100 million in the currency's units per demo account
HOUSE_FUNDING_MINOR = 10**11  # the clearing house's own float on the rail
DEPLOYMENT_POLL_SECONDS = 2.0
CHAIN_RETRY_SECONDS = 5.0  # after a chain error, before the agent starts again
_log = logging.getLogger("clearing.settle")


@dataclass(frozen=True)
class RailSetup:
    rail_id: str
    contracts: RailContracts
    deployed: bool  # False: they existed
    funded: int  # demo accounts prefunded
    short: tuple[str, ...]  # demo accounts with no tokens and no allowance (payments fail)


def ensure_embedded_chain(settings: Settings, rail: Rail, rpc_url: str | None) -> None:
    """Start the local chain node for a rail on ``embedded`` (no-op when it runs)."""
    if rpc_url is None and rail.chain in (None, CHAIN_EMBEDDED):
        LocalChain(settings.chain_home, settings.chain_port).start()


def set_up_rail(
    settings: Settings,
    refdata: ReferenceData,
    rail_id: str,
    rpc_url: str | None = None,
    short: frozenset[str] = frozenset(),
) -> RailSetup:
    """Deploy the rail's contracts unless the chain has them; where the operator mints
    the token (one it deployed), prefund every demo account of the rail (those in
    ``short`` get no tokens and withdraw their allowance: their payments fail)."""
    rail = token_rail(refdata, rail_id)
    ensure_embedded_chain(settings, rail, rpc_url)
    client = ChainClient(chain_url(settings, rail, rpc_url),
                         operator_key(settings, rail, rpc_url), rail.chain_id)  # fmt: skip
    try:
        contracts, deployed = rail_contracts(client, rail, settings.chain_home), False
    except NotDeployedError:
        contracts = deploy_rail(client, rail, settings.cache_dir, settings.chain_home)
        deployed = True
    funded = 0
    if _mints(client, contracts, settings):
        scale = _scale(refdata, rail)
        accounts = [Funding(name, 0, 0) if name in short else Funding(name, minor * scale)
                    for name, minor in demo_accounts(refdata, rail)]  # fmt: skip
        funded = prefund(client, contracts, settings.cache_dir, accounts)
    return RailSetup(rail_id, contracts, deployed, funded, tuple(sorted(short)))


def fund(
    settings: Settings,
    refdata: ReferenceData,
    rail_id: str,
    participants: Iterable[str],
    rpc_url: str | None = None,
) -> list[Funding]:
    """Funding arrives: demo participants get their tokens and approve the settlement
    contract again (what ``--short`` withdrew), so their carried payments settle."""
    rail = token_rail(refdata, rail_id)
    ensure_embedded_chain(settings, rail, rpc_url)
    client = ChainClient(chain_url(settings, rail, rpc_url),
                         operator_key(settings, rail, rpc_url), rail.chain_id)  # fmt: skip
    contracts = rail_contracts(client, rail, settings.chain_home)
    if not _mints(client, contracts, settings):
        raise ChainError(f"rail {rail_id}'s token is not one this operator mints")
    names = dict(demo_accounts(refdata, rail))
    unknown = sorted(set(participants) - set(names))
    if unknown:
        raise ChainError(f"not demo accounts of rail {rail_id}: {', '.join(unknown)}")
    scale = _scale(refdata, rail)
    accounts = [Funding(p, names[p] * scale) for p in sorted(set(participants))]
    prefund(client, contracts, settings.cache_dir, accounts)
    return accounts


def _mints(client: ChainClient, contracts: RailContracts, settings: Settings) -> bool:
    """Whether the operator is the token's minter (a token it deployed)."""
    token = client.contract(contracts.token, compiled(TOKEN, settings.cache_dir))
    return str(token.functions.minter().call()) == client.address


def _scale(refdata: ReferenceData, rail: Rail) -> int:
    """Token units per minor unit of the rail's currency (exact: decimals >= exponent)."""
    return int(10 ** (rail.decimals - refdata.currencies[rail.currency].minor_exponent))


def demo_accounts(refdata: ReferenceData, rail: Rail) -> list[tuple[str, int]]:
    """(demo key name, funding in minor units) of the rail's accounts whose address is
    their demo address: the participants on the rail and the clearing house."""
    out = []
    if rail.clearing_house_address == demo_address(house_key_name(rail.rail_id)):
        out.append((house_key_name(rail.rail_id), HOUSE_FUNDING_MINOR))
    for pid, p in sorted(refdata.participants.items()):
        on_rail = any(a.rail_id == rail.rail_id for a in p.accounts)
        if on_rail and p.chain_address == demo_address(pid):
            out.append((pid, DEMO_FUNDING_MINOR))
    return out


class EmbeddedSettler:
    """The settlement agent ``clearing worker all`` runs for one token rail on the
    embedded chain: it waits until the rail's contracts are deployed (``clearing settle
    --deploy``; its batches wait on their topic meanwhile), then settles, starting the
    chain node again when it is down."""

    def __init__(
        self, settings: Settings, codec: Codec, holder: RefdataHolder, metrics: Metrics,
        rail_id: str, senders: SenderLocks,
    ) -> None:  # fmt: skip
        self.settings, self.codec, self.holder = settings, codec, holder
        self.metrics, self.rail_id, self.senders = metrics, rail_id, senders
        self.faults = Faults()

    def run(self, stop: threading.Event) -> None:
        """Settle until ``stop``. A chain error (the node down, a stuck transaction) is
        counted and logged, and the agent starts again after a pause, asking the chain
        first: ingest and netting in the same worker go on meanwhile."""
        while not stop.is_set():
            try:
                chain = self._connect_when_deployed(stop)
                if chain is None:
                    return
                agent = TokenSettlementAgent(self.settings.bootstrap(), self.codec,
                                             self.holder.get, chain, self.settings.worker_id,
                                             self.metrics, self.faults)  # fmt: skip
                _log.info("%s: settling through %s", self.rail_id, chain.settlement.address)
                agent.run(stop)
                return
            except ChainError as exc:
                self.metrics.chain_errors.labels(self.rail_id).inc()
                _log.error("%s: %s; settling again in %.0f s", self.rail_id, exc,
                           CHAIN_RETRY_SECONDS)  # fmt: skip
                stop.wait(CHAIN_RETRY_SECONDS)

    def _connect_when_deployed(self, stop: threading.Event) -> RailChain | None:
        """The rail's chain once its contracts are deployed there; None if stopped first."""
        settings, said = self.settings, False
        while True:
            if recorded(settings.chain_home, self.rail_id, settings.embedded_chain_url):
                refdata = self.holder.get()
                ensure_embedded_chain(settings, token_rail(refdata, self.rail_id), None)
                on_sent = functools.partial(self.faults.point, "after_submit")
                try:
                    return connect(settings, refdata, self.rail_id, on_sent=on_sent,
                                   senders=self.senders)  # fmt: skip
                except NotDeployedError:
                    pass  # recorded on a chain this node's state no longer is
            if not said:
                _log.warning(
                    "%s: no contracts on the embedded chain yet; its batches wait "
                    "for `clearing settle --rail %s --deploy`",
                    self.rail_id,
                    self.rail_id,
                )
                said = True
            if stop.wait(DEPLOYMENT_POLL_SECONDS):
                return None


def embedded_token_rails(refdata: ReferenceData) -> list[str]:
    """The token rails whose chain is ``embedded``, by id."""
    token = ExportFormat.TOKEN_BATCH
    rails = refdata.rails.values()
    return sorted(
        r.rail_id for r in rails if r.export_format is token and r.chain == CHAIN_EMBEDDED
    )


def embedded_settlers(
    settings: Settings, codec: Codec, holder: RefdataHolder, metrics: Metrics
) -> list[EmbeddedSettler]:
    """One per token rail whose chain is ``embedded``, sharing the operator's nonces."""
    senders = SenderLocks()
    rails = embedded_token_rails(holder.get())
    return [EmbeddedSettler(settings, codec, holder, metrics, rail, senders) for rail in rails]
