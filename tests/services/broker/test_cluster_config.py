"""The shape of a local cluster, without starting one (DESIGN section 12): node K's
ports and home, the static quorum, the replication every node defaults to; how the
clients find every node; and how a topic of the plan fits the cluster's size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from clearing_core.errors import ClearingError
from clearing_services.broker.cluster import LocalCluster, node_config, replication
from clearing_services.broker.distribution import KafkaDistribution
from clearing_services.broker.local import BrokerConfig, server_properties
from clearing_services.kafka.topics import TopicSpec, fitted, load_topic_plan
from clearing_services.settings import load_settings, local_addresses, recorded_broker_nodes
from tests.conftest import REPO

BASE = BrokerConfig(home=Path("/srv/kafka"), port=19092, controller_port=19093, heap_mb=768)


def test_node_k_of_three_has_its_own_home_ports_and_id_and_the_same_quorum() -> None:
    nodes = [node_config(BASE, k, 3) for k in (1, 2, 3)]
    assert [(n.home.name, n.port, n.controller_port, n.node_id) for n in nodes] == [
        ("node-1", 19092, 19093, 1),
        ("node-2", 19094, 19095, 2),
        ("node-3", 19096, 19097, 3),
    ]
    voters = "1@127.0.0.1:19093,2@127.0.0.1:19095,3@127.0.0.1:19097"
    assert {n.voters for n in nodes} == {voters}
    props = server_properties(nodes[1])
    assert (props["node.id"], props["controller.quorum.voters"]) == ("2", voters)
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19094,CONTROLLER://127.0.0.1:19095"
    assert props["log.dirs"] == "/srv/kafka/node-2/data"
    assert all(n.heap_mb == 512 for n in nodes)  # three JVMs beside the workers


def test_three_nodes_replicate_everything_three_times_and_write_with_two() -> None:
    props = server_properties(node_config(BASE, 1, 3))
    assert {k: props[k] for k in replication(3)} == {
        "default.replication.factor": "3", "min.insync.replicas": "2",
        "unclean.leader.election.enable": "false", "offsets.topic.replication.factor": "3",
        "transaction.state.log.replication.factor": "3", "transaction.state.log.min.isr": "2",
        "share.coordinator.state.topic.replication.factor": "3",
        "share.coordinator.state.topic.min.isr": "2"}  # fmt: skip
    single = server_properties(BASE)
    assert (single["node.id"], single["controller.quorum.voters"]) == ("1", "1@127.0.0.1:19093")
    assert single["offsets.topic.replication.factor"] == "1"


def test_clients_find_every_node_of_the_recorded_cluster(tmp_path: Path) -> None:
    assert local_addresses("127.0.0.1", 9092, 3) == "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
    assert local_addresses("127.0.0.1", 9092, 1) == "127.0.0.1:9092"
    env = {"CLEARING_STATE_DIR": str(tmp_path)}
    assert load_settings(env).bootstrap() == "127.0.0.1:9092"
    (tmp_path / "kafka").mkdir()
    (tmp_path / "kafka" / "cluster.json").write_text(json.dumps({"nodes": 3}))
    assert recorded_broker_nodes(tmp_path / "kafka") == 3
    assert load_settings(env).bootstrap() == "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
    assert load_settings({**env, "KAFKA_BOOTSTRAP": "k:1"}).bootstrap() == "k:1"
    (tmp_path / "kafka" / "cluster.json").write_text("{nodes")
    with pytest.raises(ClearingError, match=r"cluster.json is unreadable"):
        load_settings(env)


def test_a_cluster_is_three_nodes_and_plain() -> None:
    distribution = KafkaDistribution(pom=Path("pom.xml"), cache_dir=Path("/tmp"))
    with pytest.raises(ClearingError, match="a cluster has 3 nodes"):
        LocalCluster(BASE, distribution, 2)
    with pytest.raises(ClearingError, match="--secure runs one node"):
        LocalCluster(BrokerConfig(home=Path("/x"), secure=True), distribution, 3)
    cluster = LocalCluster(BASE, distribution, 3)
    assert cluster.bootstrap == "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"
    with pytest.raises(ClearingError, match="nodes 1 to 3"):
        cluster.node(4)


def test_a_topic_of_the_plan_fits_the_clusters_size() -> None:
    plan = load_topic_plan()
    assert {s.replication_factor for s in plan.topics} == {3}  # what three nodes give
    obligations = plan.get("clearing.obligations")
    one, three = fitted(obligations, 1), fitted(obligations, 3)
    assert (one.replication_factor, "min.insync.replicas" in one.config) == (1, False)
    assert (three.replication_factor, three.config["min.insync.replicas"]) == (3, "2")
    assert {one.config["unclean.leader.election.enable"],
            three.config["unclean.leader.election.enable"]} == {"false"}  # fmt: skip
    own = TopicSpec("t", 1, 3, {"min.insync.replicas": "3"})
    assert fitted(own, 5).config["min.insync.replicas"] == "3"  # the topic's own wins
    assert fitted(own, 5).replication_factor == 3


def test_the_docker_compose_cluster_is_the_same_shape() -> None:
    compose = yaml.safe_load((REPO / "infra/docker-compose.cluster.yml").read_text())
    nodes = compose["services"]
    assert sorted(nodes) == ["kafka-1", "kafka-2", "kafka-3"]
    ports = [nodes[f"kafka-{k}"]["ports"][0].rsplit(":", 1)[1] for k in (1, 2, 3)]
    assert ",".join(f"127.0.0.1:{p}" for p in ports) == local_addresses("127.0.0.1", 9092, 3)
    env = nodes["kafka-1"]["environment"]
    assert {f"KAFKA_{k.upper().replace('.', '_')}": str(v) for k, v in replication(3).items()
            } == {k: str(env[k]) for k in (f"KAFKA_{k.upper().replace('.', '_')}"
                                            for k in replication(3))}  # fmt: skip
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].count("@") == 3
