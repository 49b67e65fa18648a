"""The local broker through the real CLI: start twice is harmless, status tells the
truth, stop leaves no process; topics are created idempotently."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from clearing_services.broker.health import probe
from clearing_services.kafka.topics import create_topics, load_topic_plan
from tests.support.brokers import free_port
from tests.support.installed import CLEARING as INSTALLED

pytestmark = pytest.mark.broker
CLEARING = [str(INSTALLED)]  # exit codes as an operator's shell sees them


def _clearing(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLEARING, *args], capture_output=True, text=True, timeout=180, env=env, check=False
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_broker_lifecycle_through_the_cli(tmp_path: Path, kafka_bootstrap: str) -> None:
    port, cport = free_port(), free_port()
    where = [
        "--home",
        str(tmp_path / "kafka"),
        "--port",
        str(port),
        "--controller-port",
        str(cport),
    ]
    env = {**os.environ, "CLEARING_BROKER_HEAP_MB": "384"}

    stopped = _clearing("broker", "status", "--json", *where, env=env)
    assert stopped.returncode == 3
    assert json.loads(stopped.stdout)["state"] == "stopped"

    first = _clearing("broker", "start", "--json", *where, env=env)
    assert first.returncode == 0, first.stderr
    started = json.loads(first.stdout)
    assert started["started"] is True
    assert started["state"] == "running"
    pid = started["pid"]
    assert _alive(pid)

    second = _clearing("broker", "start", "--json", *where, env=env)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["started"] is False
    assert json.loads(second.stdout)["pid"] == pid

    running = _clearing("broker", "status", "--json", *where, env=env)
    assert running.returncode == 0
    status = json.loads(running.stdout)
    info = probe(f"127.0.0.1:{port}")
    assert info is not None
    assert status["cluster"]["cluster_id"] == info.cluster_id

    stop = _clearing("broker", "stop", "--json", *where, env=env)
    assert stop.returncode == 0
    assert json.loads(stop.stdout)["stopped"] is True
    assert not _alive(pid)
    leftovers = subprocess.run(
        ["pgrep", "-f", str(tmp_path / "kafka")], capture_output=True, text=True, check=False
    )
    assert leftovers.stdout.strip() == ""
    assert probe(f"127.0.0.1:{port}", timeout_seconds=1) is None

    after = _clearing("broker", "status", *where, env=env)
    assert after.returncode == 3
    again = _clearing("broker", "stop", "--json", *where, env=env)
    assert json.loads(again.stdout)["stopped"] is False


def test_start_refuses_a_port_taken_by_someone_else(tmp_path: Path, kafka_bootstrap: str) -> None:
    taken = kafka_bootstrap.rsplit(":", 1)[1]
    result = _clearing(
        "broker", "start", "--home", str(tmp_path / "k"), "--port", taken,
        "--controller-port", str(free_port()),
    )  # fmt: skip
    assert result.returncode == 4
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "in use by another process" in lines[0]


def test_topics_create_is_idempotent(kafka_bootstrap: str) -> None:
    first = _clearing(
        "topics", "create", "--bootstrap", kafka_bootstrap, "--rail", "usd-stable",
        "--rail", "cnh-cips", "--json",
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    outcome = json.loads(first.stdout)["topics"]
    plan = load_topic_plan()
    expected = {s.name for s in plan.for_rails(["usd-stable", "cnh-cips"])}
    assert set(outcome) == expected
    second = _clearing("topics", "create", "--bootstrap", kafka_bootstrap, "--json")
    assert set(json.loads(second.stdout)["topics"].values()) == {"exists"}

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    metadata = admin.list_topics(timeout=10)
    for spec in plan.for_rails(["usd-stable"]):
        assert len(metadata.topics[spec.name].partitions) == spec.partitions
    again = create_topics(admin, plan.for_rails(["usd-stable"]))
    assert again.created == []


def test_cluster_ids_never_look_like_options() -> None:
    from clearing_services.broker.local import kafka_uuid

    ids = [kafka_uuid() for _ in range(5_000)]
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
    assert len(set(ids)) == len(ids)
