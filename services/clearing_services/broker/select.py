"""Which broker to use: ``KAFKA_BOOTSTRAP``, else the local jar-based node."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from clearing_services.broker.cluster import LocalCluster
from clearing_services.broker.distribution import BrokerUnavailableError, KafkaDistribution
from clearing_services.broker.health import ClusterInfo, wait_until_healthy
from clearing_services.broker.local import BrokerConfig, LocalBroker
from clearing_services.settings import Settings, infra_dir, project_root, recorded_broker_nodes


def distribution(settings: Settings) -> KafkaDistribution:
    return KafkaDistribution(pom=infra_dir() / "kafka" / "pom.xml", cache_dir=settings.cache_dir)


def checkout_tag() -> str:
    """Tag for the JVMs this checkout starts, so CI can find its own strays."""
    root = project_root()
    return f"clearing:{root}" if root else "clearing"


def local_broker(
    settings: Settings,
    *,
    home: Path | None = None,
    port: int | None = None,
    controller_port: int | None = None,
    heap_mb: int | None = None,
    secure: bool = False,
    overrides: Mapping[str, str] | None = None,
) -> LocalBroker:
    """The local node as the settings (or the arguments) describe it; ``overrides``
    replace its server properties."""
    config = BrokerConfig(
        home=(home or settings.broker_home).resolve(),
        host=settings.broker_host,
        port=port or settings.broker_port,
        controller_port=controller_port or settings.controller_port,
        heap_mb=heap_mb or settings.broker_heap_mb,
        tag=checkout_tag(),
        log4j_config=infra_dir() / "kafka" / "log4j2.properties",
        secure=secure,
        overrides=dict(overrides or {}),
    )
    return LocalBroker(config, distribution(settings))


def local_cluster(
    settings: Settings,
    nodes: int,
    *,
    home: Path | None = None,
    port: int | None = None,
    heap_mb: int | None = None,
    overrides: Mapping[str, str] | None = None,
) -> LocalCluster:
    """The local cluster of ``nodes`` (3) in the broker home: node K at ``port + 2(K-1)``."""
    node = local_broker(settings, home=home, port=port, heap_mb=heap_mb, overrides=overrides)
    return LocalCluster(node.config, node.distribution, nodes)


def home_nodes(settings: Settings, home: Path | None = None) -> int:
    """How many nodes the broker home holds, as its start recorded it."""
    return recorded_broker_nodes((home or settings.broker_home).resolve())


def ensure_broker(settings: Settings, timeout_seconds: float = 60.0) -> tuple[ClusterInfo, bool]:
    """A reachable broker, starting the local one if needed; (info, started_here)."""
    if settings.bootstrap_servers:
        info = wait_until_healthy(
            settings.bootstrap_servers,
            timeout_seconds=timeout_seconds,
            security=settings.kafka_security.librdkafka(),
        )
        if info is None:
            raise BrokerUnavailableError(
                f"KAFKA_BOOTSTRAP={settings.bootstrap_servers} does not answer metadata requests"
            )
        return info, False
    if settings.broker_nodes > 1:  # the home holds a cluster: start all of it
        whole, started = local_cluster(settings, settings.broker_nodes).start(timeout_seconds)
        info = next(n.cluster for n in whole.nodes if n.cluster is not None)
        return info, started
    status, started = local_broker(settings).start(timeout_seconds=timeout_seconds)
    assert status.cluster is not None
    return status.cluster, started
