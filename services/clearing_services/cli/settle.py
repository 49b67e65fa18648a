"""``clearing settle``: a token rail's settlement agent, or (``--deploy``) the rail's
contracts on its chain."""

from __future__ import annotations

import signal
import threading
from dataclasses import asdict

import click

from clearing_core.encoding.codec import Codec
from clearing_core.encoding.schemas import SchemaCatalog
from clearing_core.refdata import ReferenceData
from clearing_services.chain.client import ChainError
from clearing_services.cli.common import (
    bootstrap_option,
    emit_json,
    err_console,
    json_option,
    needs_broker,
    one_line_errors,
    settings,
)
from clearing_services.faults import Faults
from clearing_services.kafka.codecs import codec_for
from clearing_services.kafka.refdata import RefdataFollower, RefdataHolder, load_refdata_from_topics
from clearing_services.runtime.metrics import Metrics
from clearing_services.settings import Settings
from clearing_services.settlement.token_agent import TokenSettlementAgent
from clearing_services.settlement.token_chain import connect, token_rail
from clearing_services.settlement.token_setup import ensure_embedded_chain, fund, set_up_rail


@click.command("settle")
@click.option("--rail", "rail_id", required=True, help="The token rail (reference data rail_id).")
@click.option("--rpc-url", default=None,
              help="JSON-RPC URL of the chain (default: the rail's `chain`; `embedded`: the "
              "local node, started when needed).")  # fmt: skip
@click.option("--deploy", is_flag=True,
              help="Deploy the rail's contracts unless the chain has them, prefund the demo "
              "accounts on the embedded chain, and exit.")  # fmt: skip
@click.option("--short", "short", multiple=True, metavar="PARTICIPANT",
              help="With --deploy: a demo participant given no tokens and no allowance (its "
              "payments fail and are carried).")  # fmt: skip
@click.option("--fund", "funded", multiple=True, metavar="PARTICIPANT",
              help="Funding arrives: a demo participant gets tokens and approves the "
              "settlement contract again; then exit.")  # fmt: skip
@click.option("--metrics-port", type=int, default=0, show_default=True,
              help="Serve Prometheus /metrics on this port (0: not at all).")  # fmt: skip
@json_option
@bootstrap_option
@one_line_errors
@needs_broker
def settle(
    rail_id: str, rpc_url: str | None, deploy: bool, short: tuple[str, ...],
    funded: tuple[str, ...], metrics_port: int, as_json: bool, bootstrap: str | None,
) -> None:  # fmt: skip
    """Settle a token rail's batches on its chain: each batch once, acknowledged from
    the chain's receipts in a Kafka transaction with the consumer offset.

    Example: clearing settle --rail cnh-stable --deploy

    Example: clearing settle --rail cnh-stable --fund LEASECO-HK-01

    Example: clearing settle --rail cnh-stable

    Example: clearing settle --rail usd-stable --rpc-url http://127.0.0.1:8545
    """
    cfg = settings()
    codec = codec_for(cfg, SchemaCatalog.load())
    kafka = bootstrap or cfg.bootstrap()
    refdata = load_refdata_from_topics(kafka, codec, group="clearing-refdata-load")
    if funded:
        _fund(cfg, refdata, rail_id, funded, rpc_url, as_json)
    elif deploy:
        _deploy(cfg, refdata, rail_id, rpc_url, short, as_json)
    else:
        _run_agent(cfg, codec, kafka, refdata, rail_id, rpc_url, metrics_port)


def _fund(
    cfg: Settings, refdata: ReferenceData, rail_id: str, funded: tuple[str, ...],
    rpc_url: str | None, as_json: bool,
) -> None:  # fmt: skip
    count = len(fund(cfg, refdata, rail_id, funded, rpc_url))
    if as_json:
        emit_json({"rail_id": rail_id, "funded": count})
    else:
        err_console.print(f"{rail_id}: {count} demo accounts funded")


def _deploy(
    cfg: Settings, refdata: ReferenceData, rail_id: str, rpc_url: str | None,
    short: tuple[str, ...], as_json: bool,
) -> None:  # fmt: skip
    done = set_up_rail(cfg, refdata, rail_id, rpc_url, frozenset(short))
    if as_json:
        emit_json(asdict(done))
    else:
        verb = "deployed" if done.deployed else "already deployed"
        err_console.print(f"{rail_id}: {verb}: token {done.contracts.token}, settlement "
                          f"{done.contracts.settlement}; {done.funded} demo accounts "
                          "prefunded")  # fmt: skip


def _run_agent(
    cfg: Settings, codec: Codec, kafka: str, refdata: ReferenceData, rail_id: str,
    rpc_url: str | None, metrics_port: int,
) -> None:  # fmt: skip
    """The agent until SIGINT or SIGTERM; a chain error ends it, counted."""
    ensure_embedded_chain(cfg, token_rail(refdata, rail_id), rpc_url)
    metrics = Metrics()
    metrics.serve(metrics_port)
    faults = Faults()
    try:
        chain = connect(
            cfg, refdata, rail_id, rpc_url, on_sent=lambda: faults.point("after_submit")
        )
        holder = RefdataHolder(refdata)
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        follower = RefdataFollower(kafka, codec, holder)
        threading.Thread(target=follower.run, args=(stop,), name="refdata", daemon=True).start()
        agent = TokenSettlementAgent(kafka, codec, holder.get, chain, cfg.worker_id, metrics,
                                     faults)  # fmt: skip
        where = f"{chain.client.url} (chain {chain.client.chain_id})"
        err_console.print(f"settling {rail_id} on {where} through {chain.settlement.address}")
        agent.run(stop)
    except ChainError:
        metrics.chain_errors.labels(rail_id).inc()
        raise
