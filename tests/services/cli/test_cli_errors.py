"""The installed ``clearing`` command with no broker at the address: every command that
needs Kafka ends within its timeout with one line naming the address and exit 69, and
librdkafka's own log lines reach the terminal only at ``--log-level debug``. Also the
one-line errors and exit codes that need no broker, through the real process."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click
import pytest
from confluent_kafka import KafkaError, KafkaException

from clearing_services.cli.main import cli, main
from clearing_services.kafka.reachability import EX_UNAVAILABLE
from clearing_services.operations import lag as lag_service
from clearing_services.operations.lag import LagError, LagMonitor
from tests.support.brokers import free_port
from tests.support.installed import CLEARING, Run, clearing

TIMEOUT_S = 2  # CLEARING_BROKER_TIMEOUT_SECONDS of these runs
MARGIN_S = 15  # start-up on a slow, shared machine; the old behaviour took 35-50 s
ACK = (
    '{"batch_id": "cnh-cips-CNH-00000001", "instruction_id": "cnh-cips-CNH-00000001-0001", '
    '"rail_id": "cnh-cips", "status": "SETTLED", "reason_code": null, "bank_id": "BANK-01", '
    '"acked_at": "2026-11-24T09:00:00Z"}\n'
)
# Every command that talks to Kafka, as it would be run (the ack file is written below).
NEEDS_BROKER = {
    "topics create": ["topics", "create", "--rail", "cnh-cips"],
    "topics list": ["topics", "list", "--json"],
    "refdata publish": ["refdata", "publish"],
    "worker": ["worker", "all"],
    "replay": ["replay", "--json"],
    "produce": ["produce", "--generate", "10"],
    "cycle close": ["cycle", "close", "--currency", "CNH"],
    "lag": ["lag", "--json"],
    "dashboard": ["dashboard", "--port", "0"],
    "batches tail": ["batches", "tail", "--rail", "cnh-cips"],
    "export iso20022": ["export", "iso20022", "cnh-cips-CNH-00000001"],
    "export token": ["export", "token", "cnh-stable-CNH-00000001"],
    "ack": ["ack", "{acks}"],
    "security provision": ["security", "provision", "--json"],
    "demo": ["demo", "--json"],  # starts a broker only when KAFKA_BOOTSTRAP is not set
    "settle": ["settle", "--rail", "cnh-stable"],
    "cycles": ["cycles", "--json"],
    "bank simulate": ["bank", "simulate", "--rail", "cnh-cips", "--idle-exit", "1"],
    "statement": ["statement", "--participant", "BANK-HK-01"],
    "dlq count": ["dlq", "count", "--by", "participant"],
    "dlq show": ["dlq", "show", "--last", "3", "--json"],
    "dlq redrive": ["dlq", "redrive", "--reason", "UNKNOWN_CONTRACT", "--dry-run"],
}
NO_BROKER = {
    "broker start", "broker stop", "broker status", "broker logs", "broker fetch",
    "schemas list", "net", "keys generate", "keys public", "chain start", "chain stop",
    "chain status",
}  # fmt: skip


def closed_address() -> str:
    """An address where nothing listens (a free port, not bound by anyone now)."""
    return f"127.0.0.1:{free_port()}"


def leaf_commands(group: click.Group, prefix: str = "") -> Iterator[str]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from leaf_commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}"


@pytest.fixture(scope="module")
def no_broker(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    state = tmp_path_factory.mktemp("no-broker")
    address = closed_address()
    env = {**os.environ, "KAFKA_BOOTSTRAP": address, "CLEARING_STATE_DIR": str(state),
           "CLEARING_BROKER_TIMEOUT_SECONDS": str(TIMEOUT_S)}  # fmt: skip
    env.pop("CLEARING_LOG_LEVEL", None)
    (state / "acks.jsonl").write_text(ACK)
    return address, env


@pytest.fixture(scope="module")
def runs(no_broker: tuple[str, dict[str, str]]) -> dict[str, Run]:
    """Every broker command once, four at a time (each is mostly waiting)."""
    _, env = no_broker
    acks = str(Path(env["CLEARING_STATE_DIR"]) / "acks.jsonl")

    def run(name: str) -> Run:
        return clearing(*(a.format(acks=acks) for a in NEEDS_BROKER[name]), env=env)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(NEEDS_BROKER, pool.map(run, NEEDS_BROKER), strict=True))


def test_every_command_is_known_to_need_a_broker_or_not() -> None:
    assert CLEARING.is_file(), f"the clearing entry point is not installed at {CLEARING}"
    assert set(leaf_commands(cli)) == set(NEEDS_BROKER) | NO_BROKER
    assert not set(NEEDS_BROKER) & NO_BROKER


def assert_one_line_about(run: Run, address: str) -> None:
    assert run.returncode == EX_UNAVAILABLE, run.stderr
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith(
        f"error: no Kafka broker answers at {address} (within {TIMEOUT_S} s)"
    )
    assert "clearing broker start" in lines[0]
    for noise in ("Traceback", "%3|", "FAIL|", "rdkafka"):
        assert noise not in run.stderr
    assert run.seconds < TIMEOUT_S + MARGIN_S


@pytest.mark.parametrize("name", list(NEEDS_BROKER))
def test_command_without_broker_is_one_line_and_exit_69(
    name: str, runs: dict[str, Run], no_broker: tuple[str, dict[str, str]]
) -> None:
    assert_one_line_about(runs[name], no_broker[0])


def test_lag_without_broker_is_an_error_not_no_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    """Also past the check (a broker gone since): no answer is not an empty list."""
    monkeypatch.setattr(lag_service, "REQUEST_TIMEOUT_SECONDS", 1.0)
    with pytest.raises(LagError, match="listing consumer groups: Local: Timed out"):
        LagMonitor(closed_address()).sample()


def test_bootstrap_option_is_the_address_checked(no_broker: tuple[str, dict[str, str]]) -> None:
    _, env = no_broker
    given = closed_address()
    env = {k: v for k, v in env.items() if k != "KAFKA_BOOTSTRAP"}
    env["CLEARING_BROKER_PORT"] = str(free_port())  # the default address: closed as well
    assert_one_line_about(clearing("lag", "--json", "--bootstrap", given, env=env), given)


def test_librdkafka_lines_only_at_debug(no_broker: tuple[str, dict[str, str]]) -> None:
    address, env = no_broker
    run = clearing("--log-level", "debug", "topics", "list", env=env)
    assert run.returncode == EX_UNAVAILABLE
    lines = run.stderr.strip().splitlines()
    assert any("clearing.rdkafka" in line and "Connect to" in line for line in lines), run.stderr
    assert lines[-1].startswith(f"error: no Kafka broker answers at {address}")
    worker = clearing("worker", "--log-level", "debug", env=env)
    assert worker.returncode == EX_UNAVAILABLE
    assert "clearing.rdkafka" in worker.stderr


def test_broker_timeout_setting_is_checked(no_broker: tuple[str, dict[str, str]]) -> None:
    _, env = no_broker
    run = clearing("lag", env={**env, "CLEARING_BROKER_TIMEOUT_SECONDS": "soon"})
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == "error: CLEARING_BROKER_TIMEOUT_SECONDS='soon' is not an integer\n"


def test_broker_status_of_a_home_without_broker_is_3(tmp_path: Path) -> None:
    run = clearing(
        "broker", "status", "--home", str(tmp_path / "kafka"), "--port", str(free_port()),
        env=dict(os.environ),
    )  # fmt: skip
    assert run.returncode == 3
    assert "broker stopped" in run.stderr


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("obligation_id,debtor,creditor,currency,amount_minor\no1,A,A,CNY,100\n")
    run = clearing("net", str(bad), env=dict(os.environ))
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr.count("\n") == 1
    assert run.stderr.startswith(f"error: {bad}")
    assert "same participant" in run.stderr
    usage = clearing("lag", "--samples", "0", env=dict(os.environ))
    assert usage.returncode == 2  # click's usage errors: exit 2 before anything runs
    assert "Invalid value for '--samples'" in usage.stderr


def test_a_kafka_error_past_the_check_is_one_line_and_exit_69(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A cluster that loses a broker under a running command (``produce`` while a node
    died: librdkafka destroyed the handle it was asking) is one line, not a trace."""

    @cli.command("raise-kafka-error", hidden=True)
    def raising() -> None:
        raise KafkaException(KafkaError(KafkaError._DESTROY_BROKER, "Broker handle destroyed"))

    try:
        with pytest.raises(SystemExit) as ended:
            main(["raise-kafka-error"])
    finally:
        cli.commands.pop("raise-kafka-error")
    assert ended.value.code == EX_UNAVAILABLE
    err = capsys.readouterr().err
    assert err.startswith("error: Kafka: _DESTROY_BROKER: Broker handle destroyed")
    assert err.count("\n") == 1
