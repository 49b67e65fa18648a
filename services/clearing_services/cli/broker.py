"""``clearing broker start|stop|status|logs|fetch`` and ``clearing topics create|list``."""

from __future__ import annotations

import sys
import time
from collections import deque
from dataclasses import asdict
from pathlib import Path

import click
from rich.table import Table

from clearing_services.broker.cluster import NODE_COUNTS, ClusterStatus, LocalCluster
from clearing_services.broker.local import BrokerStatus
from clearing_services.broker.secure import credentials_file
from clearing_services.broker.select import home_nodes, local_broker, local_cluster
from clearing_services.cli.common import (
    bootstrap_option,
    emit_json,
    err_console,
    json_option,
    needs_broker,
    out_console,
    settings,
)
from clearing_services.kafka.clients import admin_client
from clearing_services.kafka.topics import create_topics, load_topic_plan
from clearing_services.kafka.waits import METADATA_TIMEOUT_SECONDS

EXIT_STOPPED = 3  # as LSB init scripts: "program is not running"
EXIT_UNHEALTHY = 1


@click.group()
def broker() -> None:
    """The local Apache Kafka (KRaft) broker, one node or a cluster of three, run from
    Maven Central jars."""


_home = click.option("--home", type=click.Path(path_type=Path), help="State folder (data, logs).")
_port = click.option("--port", type=int, help="Client port (default 9092, CLEARING_BROKER_PORT).")
_cport = click.option("--controller-port", type=int, help="KRaft controller port (default 9093).")


def _status_dict(status: BrokerStatus) -> dict[str, object]:
    out = asdict(status)
    out["cluster"] = asdict(status.cluster) if status.cluster else None
    return out


def _cluster_dict(status: ClusterStatus) -> dict[str, object]:
    return {"state": status.state, "bootstrap": status.bootstrap,
            "nodes": [_status_dict(node) for node in status.nodes]}  # fmt: skip


def _say_cluster(status: ClusterStatus, started: bool | None = None) -> None:
    verb = {True: "started", False: "already running", None: status.state}[started]
    err_console.print(f"cluster {verb}: {status.bootstrap} ({len(status.nodes)} nodes)")
    for k, node in enumerate(status.nodes, start=1):
        err_console.print(f"  node {k}: {node.state} {node.bootstrap} pid {node.pid or '-'}"
                          f"{f' ({node.detail})' if node.detail else ''}")  # fmt: skip


def _nodes_or_recorded(nodes: int | None, home: Path | None) -> int:
    return nodes if nodes is not None else home_nodes(settings(), home)


def _say_status(status: BrokerStatus, started: bool | None = None) -> None:
    verb = {True: "started", False: "already running", None: status.state}[started]
    if status.running:
        assert status.cluster is not None
        err_console.print(
            f"broker {verb}: {status.bootstrap} pid {status.pid} "
            f"cluster {status.cluster.cluster_id} ({status.cluster.topic_count} topics)"
        )
    else:
        extra = f" ({status.detail})" if status.detail else ""
        err_console.print(f"broker {status.state}: {status.bootstrap}{extra}")
    err_console.print(f"  logs: {status.log_file}", style="dim")


_nodes = click.option(
    "--nodes", type=click.Choice([str(n) for n in NODE_COUNTS]), default=None,
    help="1 node, or a cluster of 3 on consecutive ports from --port (node K at "
    "port + 2(K-1)); default: what the home holds, else 1.",
)  # fmt: skip


@broker.command()
@_home
@_port
@_cport
@_nodes
@click.option("--heap-mb", type=int, help="JVM heap (default 768; 512 per node of three).")
@click.option(
    "--secure", is_flag=True,
    help="SASL_SSL (SCRAM-SHA-512) client listener, TLS from a CA made in the home, "
    "StandardAuthorizer with deny by default; the operator's credentials go to "
    "<home>/admin.env (docs/security.md).",
)  # fmt: skip
@json_option
def start(
    home: Path | None, port: int | None, controller_port: int | None, nodes: str | None,
    heap_mb: int | None, secure: bool, as_json: bool,
) -> None:  # fmt: skip
    """Fetch Kafka if needed, format and start the node (or the nodes); harmless when
    already running.

    Example: clearing broker start --port 9092

    Example: clearing broker start --nodes 3

    Example: clearing broker start --secure --home .run/kafka-secure --port 9192
    """
    count = _nodes_or_recorded(int(nodes) if nodes else None, home)
    if count > 1:
        _start_cluster(local_cluster(settings(), count, home=home, port=port, heap_mb=heap_mb),
                       as_json)  # fmt: skip
        return
    node = local_broker(
        settings(), home=home, port=port, controller_port=controller_port, heap_mb=heap_mb,
        secure=secure,
    )  # fmt: skip
    if not node.distribution.is_fetched():
        err_console.print("fetching Apache Kafka jars from Maven Central (once)...")
    t0 = time.monotonic()
    status, started = node.start()
    credentials = credentials_file(node.config.home) if secure else None
    if as_json:
        emit_json({**_status_dict(status), "started": started, "seconds": time.monotonic() - t0,
                   "credentials": str(credentials) if credentials else None})  # fmt: skip
    else:
        _say_status(status, started)
        if credentials is not None:
            err_console.print(f"  operator: set -a; . {credentials}; set +a", style="dim")


def _start_cluster(cluster: LocalCluster, as_json: bool) -> None:
    if not cluster.nodes[0].distribution.is_fetched():
        err_console.print("fetching Apache Kafka jars from Maven Central (once)...")
    t0 = time.monotonic()
    status, started = cluster.start()
    if as_json:
        emit_json({**_cluster_dict(status), "started": started,
                   "seconds": time.monotonic() - t0})  # fmt: skip
    else:
        _say_cluster(status, started)


@broker.command()
@_home
@_port
@_cport
@json_option
def stop(home: Path | None, port: int | None, controller_port: int | None, as_json: bool) -> None:
    """Stop the node, or every node of the home's cluster (controlled shutdown, then
    kill after 30 s); no process is left.

    Example: clearing broker stop
    """
    count = home_nodes(settings(), home)
    if count > 1:
        cluster = local_cluster(settings(), count, home=home, port=port)
        stopped = cluster.stop()
        if as_json:
            emit_json({"stopped": stopped, "bootstrap": cluster.bootstrap, "nodes": count})
        else:
            err_console.print(f"cluster stopped ({count} nodes)" if stopped
                              else "cluster was not running")  # fmt: skip
        return
    node = local_broker(settings(), home=home, port=port, controller_port=controller_port)
    was_running = node.stop()
    if as_json:
        emit_json({"stopped": was_running, "bootstrap": node.config.bootstrap})
    else:
        err_console.print("broker stopped" if was_running else "broker was not running")


@broker.command()
@_home
@_port
@_cport
@json_option
def status(home: Path | None, port: int | None, controller_port: int | None, as_json: bool) -> None:
    """Whether the node (each node of a cluster) runs and answers a metadata request.
    Exit 0 running, 3 stopped, 1 unhealthy (or a cluster with a node down).

    Example: clearing broker status --json
    """
    count = home_nodes(settings(), home)
    current: BrokerStatus | ClusterStatus
    if count > 1:
        current = local_cluster(settings(), count, home=home, port=port).status()
        if as_json:
            emit_json(_cluster_dict(current))
        else:
            _say_cluster(current)
    else:
        node = local_broker(settings(), home=home, port=port, controller_port=controller_port)
        current = node.status()
        if as_json:
            emit_json(_status_dict(current))
        else:
            _say_status(current)
    if not current.running:
        sys.exit(EXIT_STOPPED if current.state == "stopped" else EXIT_UNHEALTHY)


@broker.command()
@_home
@click.option("-n", "--lines", default=40, show_default=True, help="Lines to show.")
@click.option("--node", "node_id", type=int, default=1, show_default=True,
              help="Which node of a cluster.")  # fmt: skip
def logs(home: Path | None, lines: int, node_id: int) -> None:
    """Print the end of the broker's server log (of one node of a cluster).

    Example: clearing broker logs -n 20

    Example: clearing broker logs --node 2
    """
    count = home_nodes(settings(), home)
    if count > 1:
        node = local_cluster(settings(), count, home=home).node(node_id)
    elif node_id != 1:
        raise click.BadParameter(f"the home holds one node, not {node_id}", param_hint="--node")
    else:
        node = local_broker(settings(), home=home)
    try:
        with node.log_file.open(errors="replace") as fh:
            tail = deque(fh, maxlen=lines)
    except FileNotFoundError:
        err_console.print(f"no log yet at {node.log_file}")
        return
    sys.stdout.write("".join(tail))


@broker.command()
def fetch() -> None:
    """Download the Kafka jars into the cache (start does this when needed).

    Example: clearing broker fetch
    """
    node = local_broker(settings())
    path = node.distribution.ensure()
    err_console.print(f"Kafka jars in {path}")


@click.group()
def topics() -> None:
    """The clearing topics, as defined in infra/topics.yaml."""


@topics.command("create")
@bootstrap_option
@click.option("--rail", "rails", multiple=True, help="Also create the batch topic of this rail.")
@click.option("--replication-factor", type=int, help="Override topics.yaml (for clusters).")
@json_option
@needs_broker
def topics_create(
    bootstrap: str | None, rails: tuple[str, ...], replication_factor: int | None, as_json: bool
) -> None:
    """Create every missing topic; existing ones are left alone (idempotent).

    Example: clearing topics create --rail cnh-stable --rail usd-swift
    """
    plan = load_topic_plan(replication_factor=replication_factor)
    admin = admin_client(bootstrap or settings().bootstrap())
    result = create_topics(admin, plan.for_rails(rails))
    if as_json:
        emit_json({"topics": result.outcome})
        return
    table = Table("topic", "outcome")
    for name, outcome in sorted(result.outcome.items()):
        table.add_row(name, outcome)
    out_console.print(table)


@topics.command("list")
@bootstrap_option
@json_option
@needs_broker
def topics_list(bootstrap: str | None, as_json: bool) -> None:
    """Topics on the broker with their partition counts.

    Example: clearing topics list --json
    """
    admin = admin_client(bootstrap or settings().bootstrap())
    metadata = admin.list_topics(timeout=METADATA_TIMEOUT_SECONDS)
    found = {
        name: len(t.partitions)
        for name, t in sorted(metadata.topics.items())
        if not name.startswith("__")
    }
    if as_json:
        emit_json({"topics": found})
        return
    table = Table("topic", "partitions")
    for name, count in found.items():
        table.add_row(name, str(count))
    out_console.print(table)
