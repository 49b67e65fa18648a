"""A Faust worker for the interoperability test: it consumes single-object-encoded
records (aiokafka underneath), decodes them, and produces them re-encoded to an
output topic. Run as ``python -m tests.support.faust_echo worker``; topics and
broker come from the environment."""

from __future__ import annotations

import os

import faust

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.encoding.schemas import SchemaCatalog

BOOTSTRAP = os.environ["ECHO_BOOTSTRAP"]
codec = SingleObjectCodec(SchemaCatalog.load())

app = faust.App(
    os.environ["ECHO_APP_ID"],
    broker=f"kafka://{BOOTSTRAP}",
    store="memory://",
    datadir=os.environ["ECHO_DATADIR"],
    value_serializer="raw",
    key_serializer="raw",
    web_enabled=False,
    topic_partitions=1,
    topic_replication_factor=1,
    consumer_auto_offset_reset="earliest",
    processing_guarantee=os.environ.get("ECHO_GUARANTEE", "at_least_once"),
)
source = app.topic(os.environ["ECHO_IN"], value_type=bytes, key_type=bytes, internal=False)
sink = app.topic(os.environ["ECHO_OUT"], value_type=bytes, key_type=bytes, internal=False)


@app.agent(source)
async def echo(stream: faust.StreamT[bytes]) -> None:
    """Decode every record (a bad one would crash the test loudly) and send it on."""
    async for key, value in stream.items():
        decoded = codec.decode(value)
        out = codec.encode(decoded.name, decoded.record)
        await sink.send(key=key, value=out)


if __name__ == "__main__":
    app.main()
