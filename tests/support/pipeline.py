"""Small helpers so a pipeline test reads in a few lines: workers as real processes,
events in, cycle reports and batches out."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_services.kafka.clients import produce_all, producer_config, read_topic
from clearing_services.kafka.topics import batch_topic, event_topic
from tests.conftest import free_port
from tests.support.installed import CLEARING as INSTALLED

REPO = Path(__file__).resolve().parents[2]
REFDATA_FILE = REPO / "tests/data/pipeline-refdata.yaml"
CLEARING = [str(INSTALLED)]  # the installed entry point: exit codes as a supervisor sees them


@contextmanager
def own_broker(home: Path) -> Iterator[str]:
    """A broker of a test module's own: the contract's fixed topic names and consumer
    groups stay clear of every other test."""
    from clearing_services.broker.select import local_broker
    from clearing_services.settings import load_settings

    node = local_broker(load_settings(), home=home, port=free_port(),
                        controller_port=free_port(), heap_mb=512)  # fmt: skip
    status, _ = node.start()
    try:
        yield status.bootstrap
    finally:
        node.stop()


def publish_test_refdata(bootstrap: str, state: Path) -> Path:
    """Publish tests/data/pipeline-refdata.yaml; returns ``state`` for the fixtures."""
    done = clearing(bootstrap, state, "refdata", "publish", str(REFDATA_FILE))
    assert done.returncode == 0, done.stderr
    return state


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def meter(event_id: str, energy_wh: int, contract: str = "PPA-QH07-SZ01") -> dict[str, Any]:
    """A reading of the test reference data's PPA (35,000 fen per MWh)."""
    t = now()
    return {"event_id": event_id, "reporter_id": "SOLAR-QINGHAI-07", "contract_id": contract,
            "meter_id": "MTR-QH07-01", "interval_start": t - timedelta(minutes=15),
            "interval_end": t, "energy_wh": energy_wh, "reading_quality": "ACTUAL",
            "reported_at": t}  # fmt: skip


def payment(
    event_id: str, payer: str, payee: str, kind: str, amount: int, ccy: str = "CNH"
) -> dict[str, Any]:
    return {"event_id": event_id, "reporter_id": payer, "payer_id": payer, "payee_id": payee,
            "kind": kind, "currency": ccy, "amount_minor": amount, "reference": None,
            "value_date": now().date(), "reported_at": now()}  # fmt: skip


def stop_process(process: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL after a minute; always reaped."""
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


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
    store: str = "memory://",
) -> Iterator[subprocess.Popen[str]]:  # fmt: skip
    """A real worker process for the duration of the block; its log is kept beside, and
    its Prometheus endpoint is at ``process.metrics_url``."""
    log = (state / f"worker-{worker_id}.log").open("w")
    port = free_port()
    process = subprocess.Popen(
        [*CLEARING, "worker", role],
        env=env(bootstrap, state, worker_id, metrics_port=port, store=store),
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


def wait_for_dlq(bootstrap: str, codec: SingleObjectCodec, count: int) -> None:
    deadline = time.monotonic() + 120
    while len(decoded(bootstrap, codec, "clearing.dlq", f"d-{time.time_ns()}")) < count:
        assert time.monotonic() < deadline, "rejections did not reach the DLQ"
        time.sleep(0.5)


def wait_for_obligation(bootstrap: str, codec: SingleObjectCodec, obligation_id: str) -> None:
    deadline = time.monotonic() + 120
    while True:
        found = decoded(bootstrap, codec, "clearing.obligations", f"o-{time.time_ns()}")
        if any(r.get("obligation_id") == obligation_id for r in found):
            return
        assert time.monotonic() < deadline, f"{obligation_id} never reached clearing.obligations"
        time.sleep(0.5)
