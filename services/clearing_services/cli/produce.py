"""``clearing produce``: publish events from a JSON-lines or CSV file."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import click
from confluent_kafka import Producer

from clearing_core.schemas import SchemaCatalog
from clearing_services.cli.common import (
    bootstrap_option,
    emit_json,
    err_console,
    json_option,
    settings,
)
from clearing_services.codecs import codec_for
from clearing_services.event_files import encode_event_file
from clearing_services.kafka_io import produce_all, producer_config


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--type", "event_type", type=click.Choice(["meter", "compute", "payment"]),
    help="Event type of every line (JSON lines may instead carry a \"type\" key).",
)  # fmt: skip
@bootstrap_option
@json_option
def produce(file: Path, event_type: str | None, bootstrap: str | None, as_json: bool) -> None:
    """Validate a whole file of events against the schemas, then publish it.

    JSON lines: one event object per line, timestamps ISO 8601 with a zone (or
    epoch milliseconds), dates YYYY-MM-DD. CSV: a header of field names.

    Example: clearing produce events.jsonl
    """
    cfg = settings()
    catalog = SchemaCatalog.load()
    events = encode_event_file(file, codec_for(cfg, catalog), catalog, event_type)
    producer = Producer(producer_config(bootstrap or cfg.bootstrap()))
    t0 = time.perf_counter()
    counts: Counter[str] = Counter()
    for topic in sorted({e.topic for e in events}):
        chosen = [(e.key, e.value) for e in events if e.topic == topic]
        counts[topic] = produce_all(producer, topic, chosen)
    seconds = time.perf_counter() - t0
    if as_json:
        emit_json({"produced": dict(counts), "seconds": round(seconds, 3)})
    else:
        for topic, count in sorted(counts.items()):
            err_console.print(f"{count:>9,} events -> {topic}")
