"""The bank side: reading a rail's batches, and ``clearing batches tail``.

What a settlement bank or rail operator does with the clearing house: read the
batches of its rail, export one for its payment system (``cli/export.py``:
pacs.009.001.08 XML, or a token transfer batch), and send back one
acknowledgement per instruction (``cli/ack.py``).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import uuid
from collections.abc import Generator, Iterator
from datetime import datetime

import click
import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from rich.table import Table

from clearing_core.encoding.codec import Codec, CodecError
from clearing_core.encoding.jsonrecord import to_json
from clearing_core.encoding.records import SettlementBatch
from clearing_core.errors import InputError
from clearing_core.exports.documents import ExportError, format_units, rail_of_batch_id
from clearing_services.cli.common import (
    bootstrap_option,
    emit_json,
    err_console,
    json_option,
    needs_broker,
    one_line_errors,
    out_console,
    settings,
)
from clearing_services.kafka.clients import Record, consumer_config, read_topic
from clearing_services.kafka.codecs import codec_for
from clearing_services.kafka.settling import topic_partitions, watermarks
from clearing_services.kafka.topics import batch_topic
from clearing_services.kafka.waits import CONSUME_WAIT_SECONDS, METADATA_TIMEOUT_SECONDS
from clearing_services.settings import process_client_security

BATCH_TYPE = "SettlementBatch"
TAIL_DEFAULT = 10


def bank_group(name: str | None = None) -> str:
    """A group id: ``name``, else a throw-away one. A bank's principal may only use
    groups named ``bank-<its id>...`` on a secure broker (docs/security.md)."""
    principal = process_client_security().username
    prefix = f"bank-{principal}" if principal else "clearing-bank"
    return f"{prefix}-{name or uuid.uuid4().hex[:12]}"


def batch_in(codec: Codec, topic: str, value: bytes | None) -> SettlementBatch:
    """The batch a record of a rail's topic holds; else a CodecError saying what it
    holds instead (one decoder for the export, the tail and the simulated bank)."""
    if not value:
        raise CodecError("no value")
    decoded = codec.decode(value, topic=topic)
    if decoded.name != BATCH_TYPE:
        raise CodecError(f"a {decoded.name}, not a {BATCH_TYPE}")
    return decoded.as_record(SettlementBatch)


def _decode_batches(codec: Codec, records: list[Record]) -> list[SettlementBatch]:
    """The batches among ``records``; any other record is reported, one line each."""
    out = []
    for record in records:
        try:
            out.append(batch_in(codec, record.topic, record.value))
        except CodecError as exc:
            err_console.print(f"[yellow]skipped {record.topic}:{record.partition}:"
                              f"{record.offset}: {exc}[/]")  # fmt: skip
    return out


def _order(batch: SettlementBatch) -> tuple[datetime, int, str]:
    return (batch["created_at"], batch["cycle_seq"], batch["batch_id"])


def _topic_exists(bootstrap: str, topic: str) -> bool:
    from clearing_services.kafka.clients import admin_client

    return topic in admin_client(bootstrap).list_topics(timeout=METADATA_TIMEOUT_SECONDS).topics


def _end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """High watermark of each partition now."""
    consumer = Consumer(consumer_config(bootstrap, bank_group()))
    try:
        partitions = topic_partitions(consumer, topic)
        return {p: watermarks(consumer, TopicPartition(topic, p))[1] for p in partitions}
    finally:
        consumer.close()


def read_batches(
    bootstrap: str, codec: Codec, rail: str
) -> tuple[list[SettlementBatch], dict[int, int]]:
    """Every batch on a rail's topic now, oldest first, and the offsets they end at
    (where following picks up, so no batch is missed or shown twice)."""
    topic = batch_topic(rail)
    if not _topic_exists(bootstrap, topic):
        raise InputError(f"no batch topic {topic} for rail {rail!r}")
    ends = _end_offsets(bootstrap, topic)
    records = [
        r for r in read_topic(bootstrap, topic, bank_group()) if r.offset < ends.get(r.partition, 0)
    ]
    return sorted(_decode_batches(codec, records), key=_order), ends


def _follow(
    bootstrap: str, codec: Codec, rail: str, start: dict[int, int], stop: threading.Event
) -> Generator[SettlementBatch, None, None]:
    """Batches written to the rail's topic from ``start`` (offset per partition) on,
    until ``stop`` is set; partitions added later are read from their beginning."""
    topic = batch_topic(rail)
    consumer = Consumer(consumer_config(bootstrap, bank_group()))
    try:
        partitions = topic_partitions(consumer, topic)
        consumer.assign([TopicPartition(topic, p, start.get(p, 0)) for p in partitions])
        while not stop.is_set():
            for message in consumer.consume(num_messages=500, timeout=CONSUME_WAIT_SECONDS):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(error)
                value = message.value()
                record = Record(topic, int(message.partition() or 0), int(message.offset() or 0),
                                None, value if isinstance(value, bytes) else b"", 0)  # fmt: skip
                yield from _decode_batches(codec, [record])
    finally:
        consumer.close()


def _print_batch(batch: SettlementBatch) -> None:
    """A summary row and the instructions; amounts in rail units with the rail's decimals
    (instruction ids are the batch id and the sequence number shown in ``#``)."""
    decimals = int(batch["rail_decimals"])
    unit = batch.get("token_symbol") or batch["iso_currency"]
    title = f"[bold]{batch['batch_id']}[/]  rail {batch['rail_id']}"
    summary = Table(title=title, title_justify="left")
    head = [("cycle", False), ("created at", False), ("model", False), ("format", False),
            ("instructions", True), (f"control sum ({unit})", True),
            ("control sum (minor units)", True)]  # fmt: skip
    for name, right in head:
        summary.add_column(name, justify="right" if right else "left", no_wrap=True)
    summary.add_row(
        batch["cycle_id"], to_json(batch["created_at"]), batch["model"], batch["export_format"],
        f"{batch['instruction_count']:,}",
        format_units(int(batch["control_sum_rail_units"]), decimals),
        f"{batch['control_sum_minor']:,} {batch['currency']}",
    )  # fmt: skip
    out_console.print(summary)
    lines = Table(show_edge=False)
    columns = [("#", True), ("payer", False), ("payee", False), ("payer BIC/LEI", False),
               ("payee BIC/LEI", False), (f"amount ({unit})", True), ("UETR", False)]  # fmt: skip
    for name, right in columns:
        lines.add_column(name, justify="right" if right else "left", no_wrap=name == "UETR",
                         overflow="fold")  # fmt: skip
    for i in batch["instructions"]:
        lines.add_row(
            str(i["sequence"]), i["payer_id"], i["payee_id"],
            i.get("payer_bic") or i.get("payer_lei") or "-",
            i.get("payee_bic") or i.get("payee_lei") or "-",
            format_units(int(i["amount_rail_units"]), decimals), i["uetr"],
        )  # fmt: skip
    out_console.print(lines)


# --------------------------------------------------------------------------- batches


@click.group()
def batches() -> None:
    """What a settlement bank sees: the batches of a rail."""


@batches.command("tail")
@click.option("--rail", required=True, help="Rail id (topic clearing.settlement.batches.<rail>).")
@click.option("--last", "last", type=click.IntRange(min=0), default=TAIL_DEFAULT,
              show_default=True, help="How many of the latest batches to show.")  # fmt: skip
@click.option("--follow", is_flag=True, help="Keep printing new batches until Ctrl-C.")
@json_option
@bootstrap_option
@one_line_errors
@needs_broker
def tail(rail: str, last: int, follow: bool, as_json: bool, bootstrap: str | None) -> None:
    """Show the latest batches of a rail with their instructions.

    --json prints {"rail": R, "batches": [...]}; with --follow, one JSON object per
    line per batch instead (the latest N first, then each new one)."""
    cfg = settings()
    where = bootstrap or cfg.bootstrap()
    codec = codec_for(cfg)
    found, ends = read_batches(where, codec, rail)
    shown = found[len(found) - last :] if last else []
    if as_json and not follow:
        emit_json({"rail": rail, "batches": [to_json(b) for b in shown]})
        return

    def show(batch: SettlementBatch) -> None:
        if as_json:
            sys.stdout.write(orjson.dumps(to_json(batch)).decode() + "\n")
            sys.stdout.flush()
        else:
            _print_batch(batch)

    if not as_json and not shown:
        err_console.print(f"no batches on {batch_topic(rail)} yet")
    for batch in shown:
        show(batch)
    if not follow:
        return
    with until_signalled() as stop:  # before the hint: a Ctrl-C after it stops cleanly
        if not as_json:
            err_console.print(f"following {batch_topic(rail)} (Ctrl-C to stop)")
        stream = _follow(where, codec, rail, ends, stop)
        try:
            for batch in stream:
                show(batch)
        finally:
            stream.close()  # closes the consumer now, not at interpreter exit


@contextlib.contextmanager
def until_signalled() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM while the block runs. Why not KeyboardInterrupt:
    raised wherever the main thread happens to be (inside a librdkafka call or a
    generator's cleanup), it could leave ``--follow`` running; a flag read once per
    poll always ends it within half a second."""
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def find_batch(bootstrap: str, codec: Codec, batch_id: str, rails: list[str]) -> SettlementBatch:
    """The batch with this id: on the rail its id names, else on any of ``rails``."""
    candidates: list[str] = []
    with contextlib.suppress(ExportError):
        candidates.append(rail_of_batch_id(batch_id))
    candidates += [r for r in rails if r not in candidates]
    for rail in candidates:
        topic = batch_topic(rail)
        if not _topic_exists(bootstrap, topic):
            continue
        for batch in _decode_batches(codec, read_topic(bootstrap, topic, bank_group())):
            if batch["batch_id"] == batch_id:
                return batch
    raise InputError(f"batch {batch_id!r} not found on {', '.join(candidates) or 'any rail'}")


__all__ = ["bank_group", "batches", "find_batch", "read_batches"]
