"""``clearing lag`` against the real broker: the numbers agree with Kafka's own
``kafka-consumer-groups --describe``, statuses follow the committed offsets of a real
group, an idle group is still reported, and lag time is about right."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from clearing_core.operations.lag import ERR, OK, REWIND, STALL, STOP, WARN
from clearing_services.broker.select import distribution
from clearing_services.cli.lag import lag
from clearing_services.kafka.clients import consumer_config
from clearing_services.operations.group_sample import GroupProbe
from clearing_services.operations.lag import (
    GroupNotFoundError,
    LagError,
    LagMonitor,
    sample_window,
)
from clearing_services.settings import infra_dir, load_settings

COMMAND_CLASS = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"


def _topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result(30)


def _produce(
    bootstrap: str, topic: str, per_partition: dict[int, int], timestamp_ms: int = 0
) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for partition, count in per_partition.items():
        for i in range(count):
            producer.produce(
                topic, value=f"{partition}-{i}".encode(), partition=partition,
                timestamp=timestamp_ms,
            )  # fmt: skip
    assert producer.flush(30) == 0


def _member(bootstrap: str, group: str, topics: list[str], expected: int) -> Consumer:
    """A subscribed consumer that has received its assignment (a real group member)."""
    consumer = Consumer(consumer_config(bootstrap, group, **{"session.timeout.ms": 30000}))
    consumer.subscribe(topics)
    deadline = time.monotonic() + 30
    while len(consumer.assignment()) < expected:
        assert time.monotonic() < deadline, "no assignment"
        consumer.poll(0.2)
    return consumer


def _commit(consumer: Consumer, topic: str, offsets: dict[int, int]) -> None:
    consumer.commit(
        offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False
    )


def _kafka_describe(bootstrap: str, group: str, tmp: Path) -> dict[tuple[str, int], list[str]]:
    """``kafka-consumer-groups --describe`` from the project's jars, as rows by partition."""
    dist = distribution(load_settings())
    dist.ensure()
    done = subprocess.run(
        [
            "java", "-cp", dist.classpath,
            f"-Dlog4j2.configurationFile={infra_dir() / 'kafka' / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={tmp}", COMMAND_CLASS,
            "--bootstrap-server", bootstrap, "--describe", "--group", group,
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows: dict[tuple[str, int], list[str]] = {}
    header: list[str] = []
    for line in done.stdout.splitlines():
        cells = line.split()
        if cells[:3] == ["GROUP", "TOPIC", "PARTITION"]:
            header = cells
        elif header and len(cells) >= len(header) - 3 and cells[0] == group:
            rows[(cells[1], int(cells[2]))] = cells
    assert header[:6] == ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG"]
    return rows


def test_numbers_agree_with_kafka_consumer_groups(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    topic, group = f"lag-{unique}", f"lag-group-{unique}"
    _topic(kafka_bootstrap, topic, 3)
    sixty_s_ago = int(time.time() * 1000) - 60_000
    _produce(kafka_bootstrap, topic, {0: 10, 1: 7, 2: 12}, timestamp_ms=sixty_s_ago)
    consumer = _member(kafka_bootstrap, group, [topic], 3)
    try:  # really consume some, then commit only part of what was read
        seen = 0
        deadline = time.monotonic() + 30
        while seen < 15 and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                seen += 1
        _commit(consumer, topic, {0: 4, 1: 7, 2: 3})
    finally:
        consumer.close()

    theirs = _kafka_describe(kafka_bootstrap, group, tmp_path)
    runner = CliRunner()
    result = runner.invoke(
        lag,
        ["--group", group, "--json", "--samples", "2", "--interval", "0.2",
         "--bootstrap", kafka_bootstrap],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (report,) = json.loads(result.stdout)["groups"]
    assert (report["group"], report["state"], report["members"]) == (group, "EMPTY", 0)
    ours = {(p["topic"], p["partition"]): p for p in report["partitions"]}
    assert set(ours) == set(theirs) == {(topic, 0), (topic, 1), (topic, 2)}
    for key, row in theirs.items():
        mine = ours[key]
        assert [str(mine["committed_offset"]), str(mine["log_end_offset"]), str(mine["lag"])] == (
            row[3:6]
        ), (key, row)
    assert [ours[(topic, p)]["lag"] for p in range(3)] == [6, 0, 9]
    # idle group with lag: STOP where behind, OK where caught up, the group ERR
    assert [ours[(topic, p)]["status"] for p in range(3)] == [STOP, OK, STOP]
    assert report["status"] == ERR
    # records written with a time 60 s in the past: about 60 s behind
    for p in (0, 2):
        assert 55 <= ours[(topic, p)]["lag_seconds"] <= 120
    assert ours[(topic, 1)]["lag_seconds"] == 0

    table = runner.invoke(lag, ["--group", group, "--samples", "1", "--bootstrap", kafka_bootstrap])
    assert table.exit_code == 0, table.output
    assert group in table.stdout
    assert "STOP" in table.stdout


def test_statuses_follow_commits_of_a_live_group(kafka_bootstrap: str, unique: str) -> None:
    topic, growing, group = f"lag-s-{unique}", f"lag-w-{unique}", f"lag-s-group-{unique}"
    _topic(kafka_bootstrap, topic, 3)
    _topic(kafka_bootstrap, growing, 1)
    _produce(kafka_bootstrap, topic, {0: 20, 1: 20, 2: 20})
    _produce(kafka_bootstrap, growing, {0: 20})
    consumer = _member(kafka_bootstrap, group, [topic, growing], 4)
    monitor = LagMonitor(kafka_bootstrap, [group], window=10)
    try:
        _commit(consumer, topic, {0: 5, 1: 10, 2: 15})
        _commit(consumer, growing, {0: 5})
        monitor.sample()
        _commit(consumer, topic, {0: 10, 2: 8})  # 0 advances, 1 holds, 2 goes back
        _produce(kafka_bootstrap, growing, {0: 10})
        _commit(consumer, growing, {0: 10})  # commits, but the lag grows
        monitor.sample()
        _commit(consumer, topic, {0: 15})
        _produce(kafka_bootstrap, growing, {0: 10})
        _commit(consumer, growing, {0: 15})
        monitor.sample()
        (report,) = monitor.report()
    finally:
        consumer.close()
    statuses = {(p.topic, p.partition): p.status for p in report.partitions}
    assert statuses == {
        (topic, 0): OK, (topic, 1): STALL, (topic, 2): REWIND, (growing, 0): WARN,
    }  # fmt: skip
    assert report.status == ERR
    assert report.members == 1
    assert report.state == "STABLE"
    lags = {(p.topic, p.partition): p.lag for p in report.partitions}
    assert lags == {(topic, 0): 5, (topic, 1): 10, (topic, 2): 12, (growing, 0): 25}

    # the member has left: the idle group is still reported, from its offsets
    (idle,) = sample_window(LagMonitor(kafka_bootstrap, [group]), 2, 0.2)
    assert (idle.state, idle.members) == ("EMPTY", 0)
    assert {p.status for p in idle.partitions} == {STOP}
    assert all(p.lag >= 0 for p in idle.partitions)


def test_every_group_listed_and_lag_never_negative(kafka_bootstrap: str, unique: str) -> None:
    topic, group = f"lag-n-{unique}", f"lag-n-group-{unique}"
    _topic(kafka_bootstrap, topic, 1)
    _produce(kafka_bootstrap, topic, {0: 3})
    consumer = Consumer(consumer_config(kafka_bootstrap, group))
    try:  # a committed offset beyond the log end (as after a truncation)
        _commit(consumer, topic, {0: 50})
    finally:
        consumer.close()
    reports = {r.group: r for r in sample_window(LagMonitor(kafka_bootstrap), 1, 0.1)}
    assert group in reports
    (partition,) = reports[group].partitions
    assert (partition.committed_offset, partition.log_end_offset, partition.lag) == (50, 3, 0)
    assert partition.status == OK
    assert partition.lag_seconds == 0


def _one_of_four_read(bootstrap: str, topic: str) -> str:
    """A group that committed offset 1 of ``topic``, a new topic of 4 records."""
    group = f"{topic}-group"
    _topic(bootstrap, topic, 1)
    _produce(bootstrap, topic, {0: 4})
    consumer = Consumer(consumer_config(bootstrap, group))
    try:
        _commit(consumer, topic, {0: 1})
    finally:
        consumer.close()
    return group


def _dead(pid: int) -> bool:
    """True once our child ``pid`` can be reaped, or has been (``WNOWAIT`` leaves it
    for the probe to reap). Not /proc's zombie state: a thread group's leader shows
    it while librdkafka's threads are still exiting and ``waitpid`` answers nothing."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def test_a_probe_child_that_hangs_costs_one_sample_not_the_process(
    kafka_bootstrap: str, unique: str
) -> None:
    """The group description runs in a child because librdkafka aborts the process
    when a coordinator's connection drops mid-request (group_sample.py): a child that
    gives no answer is one sample not measured, it is killed, and the next sample
    starts a new one."""
    group = _one_of_four_read(kafka_bootstrap, f"lag-c-{unique}")
    with LagMonitor(kafka_bootstrap, [group], window=4) as monitor:
        monitor.probe = GroupProbe(kafka_bootstrap, answer_seconds_max=1.0)
        monitor.sample()
        first = monitor.probe.child_pid
        assert first is not None
        os.kill(first, signal.SIGSTOP)  # alive, never answering: a request that hangs
        with pytest.raises(LagError, match="not described this time"):
            monitor.sample()
        assert monitor.probe.child_pid is None
        assert _dead(first)  # killed, not left stopped
        monitor.sample()
        assert monitor.probe.child_pid not in (None, first)
        (report,) = monitor.report(probe=False)
    assert [(p.committed_offset, p.log_end_offset) for p in report.partitions] == [(1, 4)]
    assert monitor.probe.child_pid is None  # closed with the monitor


def test_a_probe_child_that_died_between_samples_is_replaced(
    kafka_bootstrap: str, unique: str
) -> None:
    """A child that died since the last sample (as librdkafka's failed assertion ends
    it) is found dead before the request is sent: a new one answers that sample."""
    group = _one_of_four_read(kafka_bootstrap, f"lag-d-{unique}")
    with LagMonitor(kafka_bootstrap, [group], window=4) as monitor:
        monitor.sample()
        first = monitor.probe.child_pid
        assert first is not None
        os.kill(first, signal.SIGABRT)
        deadline = time.monotonic() + 10
        while not _dead(first):
            assert time.monotonic() < deadline, "the probe child outlived SIGABRT"
            time.sleep(0.01)
        monitor.sample()
        assert monitor.probe.child_pid not in (None, first)
        (report,) = monitor.report(probe=False)
    assert [(p.committed_offset, p.log_end_offset) for p in report.partitions] == [(1, 4)]


def test_unknown_group_is_one_line_error(kafka_bootstrap: str, unique: str) -> None:
    with pytest.raises(GroupNotFoundError, match="not found"):
        sample_window(LagMonitor(kafka_bootstrap, [f"nobody-{unique}"]), 1, 0.1)
    result = CliRunner().invoke(
        lag, ["--group", f"nobody-{unique}", "--json", "--bootstrap", kafka_bootstrap]
    )
    assert isinstance(result.exception, GroupNotFoundError)


def test_watch_json_refreshes(kafka_bootstrap: str, unique: str) -> None:
    group = _one_of_four_read(kafka_bootstrap, f"lag-watch-{unique}")
    result = CliRunner().invoke(
        lag,
        ["--watch", "--json", "--count", "3", "--interval", "0.2", "--group", group,
         "--bootstrap", kafka_bootstrap],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 3
    assert [line["groups"][0]["partitions"][0]["lag"] for line in lines] == [3, 3, 3]
    assert lines[-1]["groups"][0]["partitions"][0]["status"] == STOP
    live = CliRunner().invoke(
        lag, ["--watch", "--count", "2", "--interval", "0.2", "--group", group,
              "--bootstrap", kafka_bootstrap],
    )  # fmt: skip
    assert live.exit_code == 0, live.output
    assert "STOP" in live.stdout
    assert "lag-watch" in live.stdout


def test_transaction_marker_is_lag_one_but_ok(kafka_bootstrap: str, unique: str) -> None:
    """After a transactional write the commit marker takes an offset that is never
    delivered: Kafka counts it as lag 1; the status and lag time see a caught-up group."""
    topic, group = f"lag-tx-{unique}", f"lag-tx-group-{unique}"
    _topic(kafka_bootstrap, topic, 1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": f"tx-{unique}"})
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(3):
        producer.produce(topic, value=b"%d" % i, partition=0)
    producer.commit_transaction(30)
    consumer = Consumer(consumer_config(kafka_bootstrap, group))
    try:
        _commit(consumer, topic, {0: 3})
    finally:
        consumer.close()
    (report,) = sample_window(LagMonitor(kafka_bootstrap, [group]), 2, 0.2)
    (partition,) = report.partitions
    assert (partition.committed_offset, partition.log_end_offset, partition.lag) == (3, 4, 1)
    assert (partition.status, partition.lag_seconds, report.status) == (OK, 0.0, OK)
