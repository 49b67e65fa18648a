"""The documented exit codes of the installed ``clearing`` process against a real broker
(README "Exit status"): ``broker status`` 0 running, 1 unhealthy, 3 stopped; ``replay``
1 when a batch on a rail's topic is not what re-netting the log gives; ``lag`` 0 whatever
the statuses, an unknown group one line and 2; ``broker start`` 4 when a port is taken;
Ctrl-C 0 for the commands that run until stopped, 130 for any other. (70, a worker's
unhandled error, is test_replay's unreadable netting state, through this same binary.)

A broker of this module's own: the replay test writes a forged batch on a contract
topic (clearing.settlement.batches.cnh-cips), which must stay clear of other tests."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from clearing_core.cycle.context import CycleContext, RailInfo
from clearing_core.cycle.ledger import CurrencyLedger
from clearing_core.cycle.settlement import RailSpec
from clearing_core.encoding.codec import SingleObjectCodec
from clearing_services.broker.health import port_open
from clearing_services.broker.local import LocalBroker
from clearing_services.kafka.clients import (
    admin_client,
    consumer_config,
    produce_all,
    producer_config,
)
from clearing_services.kafka.topics import TopicSpec, batch_topic, create_topics
from tests.support.brokers import free_port
from tests.support.installed import CLEARING, Run, clearing
from tests.support.pipeline import REFDATA_FILE, env

pytestmark = pytest.mark.own_broker
FORGED_RAIL = "cnh-cips"


def run(bootstrap: str, state: Path, *args: str) -> Run:
    return clearing(*args, env=env(bootstrap, state))


def test_broker_status_running_unhealthy_stopped(
    own_broker_node: LocalBroker, bootstrap: str, tmp_path: Path
) -> None:
    where = ["--home", str(own_broker_node.config.home), "--port", str(own_broker_node.config.port)]
    running = run(bootstrap, tmp_path, "broker", "status", "--json", *where)
    assert running.returncode == 0, running.stderr
    status = json.loads(running.stdout)
    assert status["state"] == "running"
    os.kill(status["pid"], signal.SIGSTOP)  # alive, but answers nothing
    try:
        unhealthy = run(bootstrap, tmp_path, "broker", "status", "--json", *where)
    finally:
        os.kill(status["pid"], signal.SIGCONT)
    assert unhealthy.returncode == 1, unhealthy.stderr
    assert json.loads(unhealthy.stdout)["state"] == "unhealthy"
    nowhere = ["--home", str(tmp_path / "none"), "--port", str(free_port())]
    stopped = run(bootstrap, tmp_path, "broker", "status", *nowhere)
    assert stopped.returncode == 3, stopped.stderr
    assert "broker stopped" in stopped.stderr
    again = run(bootstrap, tmp_path, "broker", "status", *where)
    assert again.returncode == 0, again.stderr  # resumed


def forged_batch(codec: SingleObjectCodec) -> tuple[str, bytes]:
    """A well-formed SettlementBatch of CNH's first cycle on the forged rail, which no
    cycle of the log made: (batch id, its bytes)."""
    ledger = CurrencyLedger("CNH")
    ledger.add({"obligation_id": "forged-1", "debtor_id": "DC-SHENZHEN-01",
                "creditor_id": "SOLAR-QINGHAI-07", "currency": "CNH",
                "amount_minor": 1_000_000, "priority": 0, "source": "PAYMENT"})  # fmt: skip
    rails = {FORGED_RAIL: RailInfo(RailSpec(FORGED_RAIL, "hub", 2, 2), "ISO20022", None)}
    context = CycleContext(
        currency="CNH", iso_currency="CNY", currency_exponent=2, rails=rails,
        rail_of={"DC-SHENZHEN-01": FORGED_RAIL, "SOLAR-QINGHAI-07": FORGED_RAIL},
        cap_minor={}, identities={}, refdata_digest="forged",
    )  # fmt: skip
    marker = {"marker_id": "forged", "currency": "CNH", "reason": "MANUAL",
              "requested_by": "test", "requested_at": datetime.now(UTC)}  # fmt: skip
    (batch,) = ledger.close(marker, datetime.now(UTC), context).batches
    assert batch["cycle_seq"] == 1
    return batch["batch_id"], codec.encode("SettlementBatch", batch, topic=batch_topic(FORGED_RAIL))


def test_replay_exits_1_when_a_batch_is_not_reproduced(
    bootstrap: str, tmp_path: Path, codec: SingleObjectCodec
) -> None:
    published = run(bootstrap, tmp_path, "refdata", "publish", str(REFDATA_FILE))
    assert published.returncode == 0, published.stderr
    closed = run(bootstrap, tmp_path, "cycle", "close", "--currency", "CNH")
    assert closed.returncode == 0, closed.stderr
    clean = run(bootstrap, tmp_path, "replay", "--json")  # CNH's cycle 1: nothing to settle
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert json.loads(clean.stdout)["cycles"] == 1

    batch_id, value = forged_batch(codec)
    produce_all(Producer(producer_config(bootstrap)), batch_topic(FORGED_RAIL),
                [(batch_id.encode(), value)])  # fmt: skip
    forged = run(bootstrap, tmp_path, "replay", "--json")
    assert forged.returncode == 1, forged.stdout + forged.stderr
    report = json.loads(forged.stdout)
    assert report["ok"] is False
    assert batch_id in forged.stdout
    told = run(bootstrap, tmp_path, "replay")
    assert told.returncode == 1, told.stderr
    assert told.stdout == ""


def test_lag_exits_0_whatever_the_status_and_2_for_an_unknown_group(
    bootstrap: str, tmp_path: Path, unique: str
) -> None:
    topic, group = f"exit-lag-{unique}", f"exit-lag-group-{unique}"
    create_topics(admin_client(bootstrap), [TopicSpec(topic, 1, 1)])
    produce_all(Producer(producer_config(bootstrap)), topic, [(None, b"%d" % i) for i in range(4)])
    consumer = Consumer(consumer_config(bootstrap, group))
    try:  # committed 1 of 4, and no member left: the partition has STOPped
        consumer.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
    finally:
        consumer.close()
    stopped = run(bootstrap, tmp_path, "lag", "--group", group, "--json", "--samples", "3",
                  "--interval", "0.2")  # fmt: skip
    assert stopped.returncode == 0, stopped.stderr
    (report,) = json.loads(stopped.stdout)["groups"]
    assert (report["status"], report["partitions"][0]["status"]) == ("ERR", "STOP")

    unknown = run(bootstrap, tmp_path, "lag", "--group", f"nobody-{unique}", "--json")
    assert (unknown.returncode, unknown.stdout) == (2, "")
    assert unknown.stderr == f"error: consumer group 'nobody-{unique}' not found\n"


def _processes_of(home: Path) -> list[int]:
    """Processes whose command line names ``home``: a broker this test started."""
    found = subprocess.run(["pgrep", "-f", str(home)], capture_output=True, text=True, check=False)
    return [int(pid) for pid in found.stdout.split()]


def test_broker_start_exits_4_when_a_port_is_taken_and_leaves_nothing_running(
    tmp_path: Path,
) -> None:
    """The client port taken: refused before anything starts. The controller port taken:
    the JVM starts, cannot bind and exits; said at once, not after the 90 s start wait."""
    home = tmp_path / "kafka"
    env = {**os.environ, "CLEARING_BROKER_HEAP_MB": "384"}
    try:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            taken = str(listener.getsockname()[1])
            client = clearing("broker", "start", "--home", str(home), "--port", taken,
                              "--controller-port", str(free_port()), env=env)  # fmt: skip
            controller = clearing("broker", "start", "--home", str(home),
                                  "--port", str(free_port()), "--controller-port", taken,
                                  env=env)  # fmt: skip
        assert (client.returncode, client.stdout) == (4, ""), client.stderr
        assert client.stderr.startswith(f"error: port {taken} is in use by another process;")
        assert client.stderr.count("\n") == 1
        assert (controller.returncode, controller.stdout) == (4, ""), controller.stderr
        assert controller.stderr.startswith("error: the local broker exited with ")
        assert controller.stderr.count("\n") == 1
        assert controller.seconds < 60, controller
        assert _processes_of(home) == []
    finally:  # a JVM that outlived the command is this test's: end it
        for pid in _processes_of(home):
            os.kill(pid, signal.SIGKILL)


def _wait_until(what: str, ready: Callable[[], bool], process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while not ready():
        assert process.poll() is None, f"exited {process.returncode} before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _as_in_a_terminal() -> None:
    """Ctrl-C as an operator's terminal delivers it. Why: a job started in the
    background by a non-interactive shell (``make test &``, nohup, some CI runners)
    ignores SIGINT, its children inherit that, and Python then never raises
    KeyboardInterrupt: the command would rightly go on running."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextmanager
def _spawned(folder: Path, *args: str, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """``clearing ARGS`` running, its stdout and stderr in ``folder``/out and err; killed
    if still running at the end of the block."""
    with (folder / "out").open("wb") as out, (folder / "err").open("wb") as err:
        process = subprocess.Popen([str(CLEARING), *args], stdout=out, stderr=err, env=env,
                                   preexec_fn=_as_in_a_terminal)  # fmt: skip
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def test_ctrl_c_stops_the_commands_that_run_until_stopped_with_0(
    bootstrap: str, tmp_path: Path, unique: str
) -> None:
    rail = f"sigint-{unique}"
    create_topics(admin_client(bootstrap), [TopicSpec(batch_topic(rail), 1, 1)])
    port = free_port()
    out, err = tmp_path / "out", tmp_path / "err"
    cases: list[tuple[list[str], Callable[[], bool]]] = [
        (["lag", "--watch", "--json", "--interval", "0.5"], lambda: b"\n" in out.read_bytes()),
        (["batches", "tail", "--rail", rail, "--follow"], lambda: b"following" in err.read_bytes()),
        (["dashboard", "--port", str(port), "--interval", "1"],
         lambda: port_open("127.0.0.1", port)),  # bound after aiohttp's signal handlers
    ]  # fmt: skip
    for args, ready in cases:
        with _spawned(tmp_path, *args, env=env(bootstrap, tmp_path)) as process:
            _wait_until(f"{args[0]} to run", ready, process)
            process.send_signal(signal.SIGINT)
            code = process.wait(timeout=60)
        assert code == 0, (args, err.read_text())
        assert "Traceback" not in err.read_text(), (args, err.read_text())


def _writer_of(fifo: Path, process: subprocess.Popen[bytes]) -> int:
    """A write end of ``fifo``, once ``process`` has opened it for reading."""
    deadline = time.monotonic() + 120
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                raise
        assert process.poll() is None, f"exited {process.returncode} before opening {fifo}"
        assert time.monotonic() < deadline, f"{fifo} never opened"
        time.sleep(0.05)


def _reading_a_pipe(pid: int) -> bool:
    """Whether the process's main thread waits in the kernel's pipe (FIFO) read."""
    return "pipe" in Path(f"/proc/{pid}/wchan").read_text()


def test_ctrl_c_aborts_any_other_command_with_130(tmp_path: Path) -> None:
    """``net`` waiting for the rest of its input (a FIFO: its opening tells this test
    that the command runs), interrupted: no output, one line."""
    fifo = tmp_path / "obligations.csv"
    os.mkfifo(fifo)
    with _spawned(tmp_path, "net", str(fifo), env=dict(os.environ)) as process:
        writer = _writer_of(fifo, process)
        try:
            os.write(writer, b"obligation_id,debtor,creditor,currency,amount_minor\n")
            # in read(2), which SIGINT interrupts: a signal caught just before the call is
            # acted on only when the call returns, here never (CPython's signal handling)
            _wait_until("net to wait for input", lambda: _reading_a_pipe(process.pid), process)
            process.send_signal(signal.SIGINT)
            code = process.wait(timeout=60)
        finally:
            os.close(writer)
    assert code == 130
    assert (tmp_path / "out").read_text() == ""
    assert (tmp_path / "err").read_text().strip() == "aborted"  # after click's newline past ^C
