"""The naive baseline of ``bench/e2e.py``: a straightforward per-event Faust agent.

One agent per event topic; each event is decoded with the project's codec,
checked and priced by ``clearing_core.ingest.stage.process_batch`` on a one-event
list with the per-event path (``fast=False``: decode to a dict, then each rule in
turn; no de-duplication table), and its obligation is encoded and sent on its
own with ``await topic.send(...)``. Faust's defaults otherwise (at-least-once,
no batching of our own, default producer settings). Its own app id and an
in-memory store, so it shares nothing with the real workers.

Run by ``bench/e2e.py`` as a separate process:
``BENCH_BOOTSTRAP=host:port BENCH_OUT=topic BENCH_DATADIR=dir [BENCH_APP_ID=id]
python bench/e2e_naive.py``
"""

from __future__ import annotations

import os
from typing import Any

import faust

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.encoding.schemas import SchemaCatalog
from clearing_core.ingest.batch import RawEvent
from clearing_core.ingest.stage import process_batch
from clearing_core.refdata.loader import load_default_refdata
from clearing_services.kafka.topics import EVENT_TOPICS, EventTopic

APP_ID = "clearing-bench-naive"


def _agent(app: faust.App, spec: EventTopic, out: faust.TopicT, codec: SingleObjectCodec) -> None:
    refdata = load_default_refdata()
    expected = {spec.topic: spec.record_type}
    source = app.topic(spec.topic, key_type=bytes, value_type=bytes)

    async def naive(stream: faust.StreamT[Any]) -> None:
        async for event in stream.events():
            message = event.message
            raw = RawEvent(
                topic=message.topic, partition=message.partition, offset=message.offset,
                key=message.key, value=message.value or b"",
                timestamp_ms=int(message.timestamp * 1000),
            )  # fmt: skip
            result = process_batch(  # the per-event path: no columns for one event
                [raw], codec=codec, refdata=refdata, expected_type=expected, seen={}, fast=False
            )
            for key, record in result.obligations:
                value = codec.encode("Obligation", record, topic=out.get_topic_name())
                await out.send(key=key, value=value)

    app.agent(source, name=f"naive-{spec.alias}")(naive)


def build_app(bootstrap: str, out_topic: str, datadir: str, app_id: str = APP_ID) -> faust.App:
    app = faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=datadir,
        value_serializer="raw",
        key_serializer="raw",
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        topic_replication_factor=1,
    )
    out = app.topic(out_topic, key_type=bytes, value_type=bytes)
    codec = SingleObjectCodec(SchemaCatalog.load())
    for spec in EVENT_TOPICS:
        _agent(app, spec, out, codec)
    return app


def main() -> None:
    env = os.environ
    app = build_app(env["BENCH_BOOTSTRAP"], env["BENCH_OUT"], env["BENCH_DATADIR"],
                    env.get("BENCH_APP_ID", APP_ID))  # fmt: skip
    worker: Any = faust.Worker(app, loglevel="warning", quiet=True)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
