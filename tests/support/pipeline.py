"""Small helpers so a pipeline test reads in a few lines: workers as real processes,
events in, cycle reports and batches out."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from confluent_kafka import Producer

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.refdata import load_refdata
from clearing_core.workload.generator import EventGenerator, GeneratedEvent
from clearing_services.chain.local import LocalChain
from clearing_services.kafka.clients import admin_client, produce_all, producer_config, read_topic
from clearing_services.kafka.topics import batch_topic, event_topic
from clearing_services.operations.audit import coverage
from tests.support.brokers import free_port
from tests.support.installed import CLEARING as INSTALLED

REPO = Path(__file__).resolve().parents[2]
REFDATA_FILE = REPO / "tests/data/pipeline-refdata.yaml"
CLEARING = [str(INSTALLED)]  # the installed entry point: exit codes as a supervisor sees them
T = TypeVar("T")


def stop_process(process: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL after a minute; always reaped."""
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def chain_port(state: Path) -> int:
    """The embedded chain's port of a state folder: one free port, kept in the folder, so
    every command and worker of a test finds the same node (and no other test's)."""
    kept = state / ".chain-port"
    if not kept.exists():
        kept.write_text(str(free_port()))
    return int(kept.read_text())


def stop_chain(state: Path) -> None:
    """Stop the embedded chain node a worker or command started for ``state``."""
    if (state / ".chain-port").exists():
        LocalChain(state / "chain", chain_port(state)).stop()


def env(
    bootstrap: str, state: Path, worker_id: str = "w1", metrics_port: int = 0,
    store: str = "memory://",
) -> dict[str, str]:  # fmt: skip
    return {
        "CLEARING_METRICS_PORT": str(metrics_port),
        **os.environ,
        "KAFKA_BOOTSTRAP": bootstrap,
        "CLEARING_STORE": store,
        "CLEARING_STATE_DIR": str(state),
        "CLEARING_WORKER_ID": worker_id,
        "CLEARING_CHAIN_PORT": str(chain_port(state)),
        "CLEARING_CACHE_DIR": str(REPO / ".cache"),  # compiled contracts, shared by runs
    }


def clearing(bootstrap: str, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLEARING, *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env(bootstrap, state),
        cwd=REPO,
        check=False,
    )


@contextmanager
def worker(
    bootstrap: str, state: Path, role: str = "all", worker_id: str = "w1",
    store: str = "memory://", extra_env: Mapping[str, str] | None = None,
) -> Iterator[subprocess.Popen[str]]:  # fmt: skip
    """A real worker process for the duration of the block; its log is kept beside (each
    start appended under a line naming the test, so a failure is still in it after the
    module's next test), and its Prometheus endpoint is at ``process.metrics_url``."""
    log = (state / f"worker-{worker_id}.log").open("a")
    test = os.environ.get("PYTEST_CURRENT_TEST", "?")
    log.write(f"=== worker {role} started at {time.strftime('%H:%M:%S')} by {test}\n")
    log.flush()
    port = free_port()
    process = subprocess.Popen(
        [*CLEARING, "worker", role],
        env={
            **env(bootstrap, state, worker_id, metrics_port=port, store=store),
            **(extra_env or {}),
        },
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    process.metrics_url = f"http://127.0.0.1:{port}/metrics"  # type: ignore[attr-defined]
    try:
        yield process
    finally:
        stop_process(process)
        log.close()


def send_events(
    bootstrap: str, codec: SingleObjectCodec, kind: str, records: list[dict[str, Any]]
) -> None:
    spec = event_topic(kind)
    items = [(str(r[spec.key_field]).encode(), codec.encode(spec.record_type, r)) for r in records]
    produce_all(Producer(producer_config(bootstrap)), spec.topic, items)


def scrape_text(url: str) -> str:
    """A worker's /metrics page; "" while nothing answers there yet."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())
    except (urllib.error.URLError, ConnectionError):
        return ""


def scrape(url: str) -> dict[str, float]:
    """A worker's metrics as {"name{labels}": value}."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def decoded(
    bootstrap: str, codec: SingleObjectCodec, topic: str, group: str
) -> list[dict[str, Any]]:
    return [codec.decode(r.value).record for r in read_topic(bootstrap, topic, group)]


def wait_for_reports(
    bootstrap: str,
    codec: SingleObjectCodec,
    currency: str,
    count: int,
    timeout_seconds: float = 120.0,
) -> list[dict[str, Any]]:
    """The cycle reports of a currency, once there are at least ``count``."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        reports = [
            r
            for r in decoded(bootstrap, codec, "clearing.cycles", f"w-{time.time_ns()}")
            if r["currency"] == currency
        ]
        if len(reports) >= count or time.monotonic() > deadline:
            return sorted(reports, key=lambda r: r["cycle_seq"])
        time.sleep(0.5)


def batches(bootstrap: str, codec: SingleObjectCodec, rail: str) -> dict[str, dict[str, Any]]:
    records = decoded(bootstrap, codec, batch_topic(rail), f"b-{time.time_ns()}")
    return {b["batch_id"]: b for b in records}


def flows(batch: dict[str, Any]) -> list[tuple[str, str, int, int]]:
    return [
        (i["payer_id"], i["payee_id"], i["amount_minor"], i["amount_rail_units"])
        for i in batch["instructions"]
    ]


def wait_until(what: str, probe: Callable[[], T], timeout_seconds: float = 120.0) -> T:
    """What ``probe`` returns once it is truthy (asked every half second); fails naming
    ``what`` when it is not by the deadline."""
    deadline = time.monotonic() + timeout_seconds
    while not (found := probe()):
        assert time.monotonic() < deadline, f"{what} did not happen in {timeout_seconds:.0f} s"
        time.sleep(0.5)
    return found


def wait_for_records(
    bootstrap: str, codec: SingleObjectCodec, topic: str, count: int
) -> list[dict[str, Any]]:
    """The decoded records of ``topic`` once there are at least ``count``."""

    def enough() -> list[dict[str, Any]]:
        records = decoded(bootstrap, codec, topic, f"r-{time.time_ns()}")
        return records if len(records) >= count else []

    return wait_until(f"{count} records on {topic}", enough)


def wait_for_dlq(bootstrap: str, codec: SingleObjectCodec, count: int) -> None:
    wait_for_records(bootstrap, codec, "clearing.dlq", count)


def wait_for_obligation(bootstrap: str, codec: SingleObjectCodec, obligation_id: str) -> None:
    def found() -> bool:
        records = decoded(bootstrap, codec, "clearing.obligations", f"o-{time.time_ns()}")
        return any(r.get("obligation_id") == obligation_id for r in records)

    wait_until(f"{obligation_id} on clearing.obligations", found)


def wait_for_carried(
    bootstrap: str, codec: SingleObjectCodec, event_ids: Iterable[str]
) -> dict[str, str]:
    """Event id -> the obligation carrying it, once every one of ``event_ids`` is
    carried by an obligation on ``clearing.obligations`` (from the ingest stage's
    ``SeenEvents``, written in the obligation's transaction). Why not a wait for
    ``p:<event id>``: a batch's payments of one payer and payee share an aggregate."""
    wanted = list(event_ids)

    def found() -> dict[str, str]:
        carried = coverage(bootstrap, codec, settle_seconds=0.0).obligation_of
        return {e: carried[e] for e in wanted} if all(e in carried for e in wanted) else {}

    return wait_until(f"events {wanted[:3]} carried on clearing.obligations", found)


def close_cycle(bootstrap: str, state: Path, currency: str) -> None:
    """Ask for a close of the currency's cycle, as an operator would."""
    done = clearing(bootstrap, state, "cycle", "close", "--currency", currency)
    assert done.returncode == 0, done.stderr


def generated(seed: int, count: int) -> list[GeneratedEvent]:
    """Events of the workload generator under the test reference data, 2% bad and 2%
    duplicates, their ids starting ``s<seed>``."""
    refdata = load_refdata(REFDATA_FILE)
    now_ms = int(time.time() * 1000)
    return EventGenerator(refdata, seed=seed, now_ms=now_ms, prefix=f"s{seed}").events(
        count, bad_ratio=0.02, duplicate_ratio=0.02
    )


def send_generated(bootstrap: str, codec: SingleObjectCodec, events: list[GeneratedEvent]) -> None:
    """The events that encode (not the corrupt ones), by kind."""
    for kind in ("meter", "compute", "payment"):
        records = [e.record for e in events if e.kind == kind and not e.corrupt]
        if records:
            send_events(bootstrap, codec, kind, records)


def group_members(bootstrap: str, group: str) -> int:
    admin = admin_client(bootstrap)  # held: a dropped client never answers its futures
    (future,) = admin.describe_consumer_groups([group]).values()
    return len(future.result(timeout=10).members)
