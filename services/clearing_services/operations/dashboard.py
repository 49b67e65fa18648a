"""The operators' dashboard: an aiohttp server with JSON endpoints and one static page.

Why this shape: background threads keep the state. A tailer (one confluent consumer,
assigned, never in a group, never committing) reads ``clearing.cycles``,
``clearing.dlq``, ``clearing.positions``, the settlement status and every
``clearing.settlement.batches.<rail>`` from the start; a sampler reads consumer lag
(``clearing_services.operations.lag``) and the event topics' log-end offsets; a third
follows the reference data (currency exponents and rail decimals for the page's units,
ack timeouts) and a fourth reads the clearing house's balances on chain. Memory is
bounded (``clearing_core.operations.dashboard``); the page polls ``/api/state`` and
draws everything itself, with nothing fetched from outside.

Run it with ``clearing dashboard`` or ``python -m clearing_services.operations.dashboard``.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import orjson
from aiohttp import web
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from clearing_core.encoding.codec import Codec
from clearing_core.encoding.records import (
    CycleReport,
    InstructionStatus,
    Position,
    Rejected,
    SettlementBatch,
)
from clearing_core.operations.dashboard import DashboardState, OffsetsSample, health, units_of
from clearing_core.operations.lag import report_json
from clearing_core.refdata import ReferenceData
from clearing_services.kafka.clients import consumer_config
from clearing_services.kafka.codecs import codec_for
from clearing_services.kafka.groups import partitions_in
from clearing_services.kafka.refdata import (
    RefdataFollower,
    RefdataHolder,
    load_refdata_from_topics,
)
from clearing_services.kafka.topics import (
    BATCH_TOPIC_PREFIX,
    CYCLES_TOPIC,
    DLQ_TOPIC,
    EVENT_TOPIC_NAMES,
    POSITIONS_TOPIC,
    STATUS_TOPIC,
)
from clearing_services.kafka.waits import CONSUME_WAIT_SECONDS, METADATA_TIMEOUT_SECONDS
from clearing_services.operations.lag import LagMonitor
from clearing_services.settings import Settings, load_settings
from clearing_services.settlement.token_chain import house_balances

STATIC = Path(__file__).parent / "static"
DEFAULT_PORT = 8050
SAMPLE_INTERVAL_SECONDS = 2.0
TOPIC_REFRESH_SECONDS = 5.0
CHAIN_SAMPLE_SECONDS = 5.0
REFDATA_WAIT_SECONDS = 0.5
THREAD_STOP_SECONDS_MAX = 15.0
_log = logging.getLogger("clearing.dashboard")


_TAILED = frozenset({CYCLES_TOPIC, DLQ_TOPIC, STATUS_TOPIC, POSITIONS_TOPIC})
_TAIL_CONFIG: dict[str, str | int | float | bool] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
    "isolation.level": "read_committed",
    "queued.max.messages.kbytes": 16384,  # bounded prefetch
}


class Dashboard:
    """The state and the two threads that keep it."""

    def __init__(
        self, bootstrap: str, codec: Codec, *, interval_seconds: float = SAMPLE_INTERVAL_SECONDS,
        settings: Settings | None = None,
    ):  # fmt: skip
        self.settings = settings or load_settings()
        self.bootstrap = bootstrap
        self.codec = codec
        self.interval_seconds = interval_seconds
        self.state = DashboardState()
        self.lag: dict[str, object] = {"groups": []}
        self.errors: dict[str, str] = {}
        self.started_ms = int(time.time() * 1000)
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.refdata: RefdataHolder | None = None  # set once the reference data is read
        self.refdata_digest = ""  # of the snapshot the state's units come from

    def start(self) -> None:
        for target, name in ((self._tail, "dashboard-tail"), (self._sample, "dashboard-sample"),
                             (self._follow_refdata, "dashboard-refdata"),
                             (self._sample_chain, "dashboard-chain")):  # fmt: skip
            thread = threading.Thread(target=self._guard(target), name=name, daemon=True)
            thread.start()
            self.threads.append(thread)

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=THREAD_STOP_SECONDS_MAX)

    def _guard(self, target: Any) -> Any:
        def run() -> None:
            while not self.stop_event.is_set():
                try:
                    target()
                    return
                except Exception as exc:  # the page shows it; try again shortly
                    _log.exception("dashboard %s failed", target.__name__)
                    with self.lock:
                        self.errors[target.__name__.strip("_")] = str(exc)
                    self.stop_event.wait(self.interval_seconds)

        return run

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            out = self.state.snapshot(int(time.time() * 1000))
            out["lag"] = self.lag
            out["errors"] = dict(self.errors)
        out["health"] = health(out, out["errors"])
        out["updated_ms"] = int(time.time() * 1000)
        return out

    # -- the tailer ---------------------------------------------------------------------

    def _wanted(self, consumer: Consumer) -> list[TopicPartition]:
        topics = consumer.list_topics(timeout=METADATA_TIMEOUT_SECONDS).topics
        out: list[TopicPartition] = []
        for name, meta in topics.items():
            if name in _TAILED or name.startswith(BATCH_TOPIC_PREFIX):
                out.extend(TopicPartition(name, p, OFFSET_BEGINNING) for p in meta.partitions)
        return out

    def _tail(self) -> None:
        consumer = Consumer(
            consumer_config(
                self.bootstrap,
                f"clearing-dashboard-{uuid.uuid4().hex[:8]}",  # never joined
                **_TAIL_CONFIG,
            )
        )
        assigned: set[tuple[str, int]] = set()
        next_refresh = 0.0
        try:
            while not self.stop_event.is_set():
                if time.monotonic() >= next_refresh:
                    new = [tp for tp in self._wanted(consumer)
                           if (tp.topic, tp.partition) not in assigned]  # fmt: skip
                    if new:
                        consumer.incremental_assign(new)
                        assigned.update((tp.topic, tp.partition) for tp in new)
                    with self.lock:
                        self.errors.pop("tail", None)  # reading again after a failure
                        self.state.rails.update(
                            t[len(BATCH_TOPIC_PREFIX) :]
                            for t, _p in assigned
                            if t.startswith(BATCH_TOPIC_PREFIX)
                        )
                    next_refresh = time.monotonic() + TOPIC_REFRESH_SECONDS
                for message in consumer.consume(num_messages=1000, timeout=CONSUME_WAIT_SECONDS):
                    error = message.error()
                    if error is not None:
                        if error.code() != KafkaError._PARTITION_EOF:
                            _log.warning("dashboard consumer: %s", error.str())
                        continue
                    self._apply(str(message.topic()), message.value())
        finally:
            consumer.close()

    def _apply(self, topic: str, value: bytes | None) -> None:
        if not value:
            return
        try:
            record = self.codec.decode(value).record
        except Exception as exc:  # a record this dashboard cannot read is skipped
            _log.warning("dashboard: undecodable record on %s: %s", topic, exc)
            return
        with self.lock:  # each topic carries one record type
            if topic == CYCLES_TOPIC:
                self.state.add_cycle(cast(CycleReport, record))
            elif topic == DLQ_TOPIC:
                self.state.add_rejected(cast(Rejected, record))
            elif topic == STATUS_TOPIC:
                self.state.add_status(cast(InstructionStatus, record))
            elif topic == POSITIONS_TOPIC:
                self.state.add_position(cast(Position, record))
            else:
                self.state.add_batch(cast(SettlementBatch, record))

    # -- the samplers -------------------------------------------------------------------

    def _follow_refdata(self) -> None:
        """The reference data, then its changes: the follower swaps the holder's snapshot
        and ``_sample_chain`` applies a new one to the state."""
        holder = RefdataHolder(
            load_refdata_from_topics(self.bootstrap, self.codec, "clearing-refdata-load")
        )
        self._use_refdata(holder.get())
        self.refdata = holder
        RefdataFollower(self.bootstrap, self.codec, holder).run(self.stop_event)

    def _use_refdata(self, refdata: ReferenceData) -> None:
        with self.lock:
            self.state.ack_timeouts = {r: x.ack_timeout_seconds for r, x in refdata.rails.items()}
            self.state.units = units_of(refdata)
            self.refdata_digest = refdata.digest
            self.errors.pop("follow_refdata", None)

    def _sample_chain(self) -> None:
        """The clearing house's balances on the token rails' chains every few seconds,
        once the reference data (which names the rails) is read."""
        while self.refdata is None:
            if self.stop_event.wait(REFDATA_WAIT_SECONDS):
                return
        while not self.stop_event.is_set():
            refdata = self.refdata.get()
            if refdata.digest != self.refdata_digest:
                self._use_refdata(refdata)
            balances = house_balances(self.settings, refdata)
            with self.lock:
                self.state.chain = balances
            self.stop_event.wait(CHAIN_SAMPLE_SECONDS)

    def _sample(self) -> None:
        with LagMonitor(self.bootstrap, None, window=10) as monitor:
            self._sample_every(monitor)

    def _sample_every(self, monitor: LagMonitor) -> None:
        while not self.stop_event.is_set():
            started = time.monotonic()
            try:
                self._sample_offsets(monitor, EVENT_TOPIC_NAMES)
                monitor.sample()
                reports = [
                    r for r in monitor.report() if not r.group.startswith("clearing-dashboard-")
                ]
                with self.lock:
                    self.lag = report_json(reports)
                    self.errors.pop("sample", None)
            except Exception as exc:
                _log.warning("dashboard sample failed: %s", exc)
                with self.lock:
                    self.errors["sample"] = str(exc)
            self.stop_event.wait(max(0.1, self.interval_seconds - (time.monotonic() - started)))

    def _sample_offsets(self, monitor: LagMonitor, topics: Iterable[str]) -> None:
        ends = monitor.log_offsets(partitions_in(monitor.admin, topics))
        totals: dict[str, int] = {}
        for (topic, _p), (_start, end) in ends.items():
            totals[topic] = totals.get(topic, 0) + end
        with self.lock:
            self.state.add_offsets(OffsetsSample(int(time.time() * 1000), totals))


def make_app(dashboard: Dashboard, *, manage: bool = True) -> web.Application:
    """The aiohttp application; with ``manage`` it starts and stops the dashboard's
    threads with the server."""

    async def index(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "dashboard.html")

    async def state(_request: web.Request) -> web.Response:
        return _json(dashboard.snapshot())

    async def part(request: web.Request) -> web.Response:
        snapshot = dashboard.snapshot()
        name = request.match_info["part"]
        if name not in snapshot:
            raise web.HTTPNotFound(text=f"no such part: {name}")
        return _json({name: snapshot[name]})

    async def health(_request: web.Request) -> web.Response:
        return _json({"ok": True})

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/api/state", state)
    app.router.add_get("/api/health", health)
    app.router.add_get("/api/{part}", part)
    app.router.add_static("/static/", STATIC)
    if manage:

        async def on_startup(_app: web.Application) -> None:
            dashboard.start()

        async def on_cleanup(_app: web.Application) -> None:
            dashboard.stop()

        app.on_startup.append(on_startup)
        app.on_cleanup.append(on_cleanup)
    return app


def _json(value: Any) -> web.Response:
    body = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    return web.Response(body=body, content_type="application/json",
                        headers={"Cache-Control": "no-store"})  # fmt: skip


def serve(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    bootstrap: str | None = None,
    interval_seconds: float = SAMPLE_INTERVAL_SECONDS,
) -> None:
    """Run the dashboard until interrupted."""
    dashboard = Dashboard(bootstrap or settings.bootstrap(), codec_for(settings),
                          interval_seconds=interval_seconds, settings=settings)  # fmt: skip
    web.run_app(make_app(dashboard), host=host, port=port, print=None, handle_signals=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m clearing_services.operations.dashboard")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--bootstrap", default=None)
    parser.add_argument("--interval", type=float, default=SAMPLE_INTERVAL_SECONDS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    serve(load_settings(), host=args.host, port=args.port, bootstrap=args.bootstrap,
          interval_seconds=args.interval)  # fmt: skip


if __name__ == "__main__":
    main()
