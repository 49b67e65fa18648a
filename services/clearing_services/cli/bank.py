"""The bank side: ``clearing batches tail``, ``clearing export iso20022|token``, ``clearing ack``.

What a settlement bank or rail operator does with the clearing house: read the
batches of its rail, export one for its payment system (pacs.009.001.08 XML, or
a token transfer batch), and send back one acknowledgement per instruction.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import sys
import threading
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click
import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from rich.table import Table

from clearing_core.encoding.codec import Codec, CodecError
from clearing_core.encoding.jsonrecord import from_json, to_json
from clearing_core.encoding.records import SettlementBatch
from clearing_core.encoding.schemas import SchemaCatalog
from clearing_core.errors import ClearingError, InputError
from clearing_core.exports.documents import (
    CLEARING_HOUSE,
    ExportError,
    Identity,
    format_units,
    pacs009_xml,
    rail_of_batch_id,
    token_batch,
)
from clearing_services.cli.common import (
    bootstrap_option,
    emit_json,
    err_console,
    json_option,
    needs_broker,
    out_console,
    settings,
)
from clearing_services.kafka.clients import (
    Record,
    client_security,
    consumer_config,
    produce_all,
    producer_config,
    read_topic,
    watermarks,
)
from clearing_services.kafka.codecs import codec_for
from clearing_services.kafka.refdata import NoReferenceDataError, load_refdata_from_topics
from clearing_services.kafka.topics import ACKS_TOPIC, batch_topic
from clearing_services.sources.event_files import read_rows

P = ParamSpec("P")
R = TypeVar("R")

BATCH_TYPE = "SettlementBatch"
ACK_TYPE = "SettlementAck"
ACK_LINES_MAX = 1_000_000
TAIL_DEFAULT = 10


def _one_line_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """A ``ClearingError`` becomes ``error: ...`` on stderr and its exit code, also
    when the command runs outside ``main`` (tests, embedding)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ClearingError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper


def _group() -> str:
    """A throw-away group id. A bank's principal may only use groups named
    ``bank-<its id>...`` on a secure broker (docs/security.md)."""
    principal = client_security().username
    prefix = f"bank-{principal}" if principal else "clearing-bank"
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _decode_batches(codec: Codec, records: list[Record]) -> list[SettlementBatch]:
    out = []
    for record in records:
        if not record.value:
            continue
        try:
            decoded = codec.decode(record.value, topic=record.topic)
        except CodecError as exc:
            err_console.print(f"[yellow]skipped {record.topic}:{record.partition}:"
                              f"{record.offset}: {exc}[/]")  # fmt: skip
            continue
        if decoded.name == BATCH_TYPE:
            out.append(decoded.as_record(SettlementBatch))
    return out


def _order(batch: SettlementBatch) -> tuple[datetime, int, str]:
    return (batch["created_at"], batch["cycle_seq"], batch["batch_id"])


def _topic_exists(bootstrap: str, topic: str) -> bool:
    from clearing_services.kafka.clients import admin_client

    return topic in admin_client(bootstrap).list_topics(timeout=10).topics


def _end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """High watermark of each partition now."""
    consumer = Consumer(consumer_config(bootstrap, _group()))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: watermarks(consumer, TopicPartition(topic, p))[1] for p in sorted(partitions)}
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
        r for r in read_topic(bootstrap, topic, _group()) if r.offset < ends.get(r.partition, 0)
    ]
    return sorted(_decode_batches(codec, records), key=_order), ends


def _follow(
    bootstrap: str, codec: Codec, rail: str, start: dict[int, int], stop: threading.Event
) -> Generator[SettlementBatch, None, None]:
    """Batches written to the rail's topic from ``start`` (offset per partition) on,
    until ``stop`` is set; partitions added later are read from their beginning."""
    topic = batch_topic(rail)
    consumer = Consumer(consumer_config(bootstrap, _group()))
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, start.get(p, 0)) for p in partitions])
        while not stop.is_set():
            for message in consumer.consume(num_messages=500, timeout=0.5):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(error)
                value = message.value()
                if not isinstance(value, bytes):
                    continue
                record = Record(topic, int(message.partition() or 0),
                                int(message.offset() or 0), None, value, 0)  # fmt: skip
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
@_one_line_errors
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
    with _until_signalled() as stop:  # before the hint: a Ctrl-C after it stops cleanly
        if not as_json:
            err_console.print(f"following {batch_topic(rail)} (Ctrl-C to stop)")
        stream = _follow(where, codec, rail, ends, stop)
        try:
            for batch in stream:
                show(batch)
        finally:
            stream.close()  # closes the consumer now, not at interpreter exit


@contextlib.contextmanager
def _until_signalled() -> Iterator[threading.Event]:
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


# --------------------------------------------------------------------------- export


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
        for batch in _decode_batches(codec, read_topic(bootstrap, topic, _group())):
            if batch["batch_id"] == batch_id:
                return batch
    raise InputError(f"batch {batch_id!r} not found on {', '.join(candidates) or 'any rail'}")


@dataclass(frozen=True)
class _Context:
    bootstrap: str
    codec: Codec
    refdata_rails: dict[str, Any]


def _context(bootstrap: str | None) -> _Context:
    cfg = settings()
    where = bootstrap or cfg.bootstrap()
    codec = codec_for(cfg)
    try:
        rails = dict(load_refdata_from_topics(where, codec, _group()).rails)
    except NoReferenceDataError:
        rails = {}
    return _Context(where, codec, rails)


def _write(out: Path | None, data: bytes, what: str) -> None:
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        out.write_bytes(data)
    except OSError as exc:
        raise InputError(f"{out}: cannot write: {exc}") from exc
    err_console.print(f"{what} -> {out}")


out_option = click.option(
    "--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Write to this file (default: stdout).",
)  # fmt: skip


@click.group()
def export() -> None:
    """Export a settlement batch for a bank's payment system or a token rail."""


@export.command("iso20022")
@click.argument("batch_id")
@out_option
@click.option(
    "--clearing-house-bic",
    envvar="CLEARING_HOUSE_BIC",
    default=None,
    help="BIC of the CLEARING_HOUSE account where the rail has no operator_bic.",
)
@click.option("--clearing-house-lei", envvar="CLEARING_HOUSE_LEI", default=None,
              help="LEI of the CLEARING_HOUSE account where the rail has no operator_bic "
              "and no BIC is given.")  # fmt: skip
@bootstrap_option
@_one_line_errors
@needs_broker
def export_iso20022(
    batch_id: str, out: Path | None, clearing_house_bic: str | None,
    clearing_house_lei: str | None, bootstrap: str | None,
) -> None:  # fmt: skip
    """Write a pacs.009.001.08 (FinancialInstitutionCreditTransfer) document for BATCH_ID.

    The CLEARING_HOUSE account is identified by the rail's operator_bic from the
    reference data; --clearing-house-bic/--clearing-house-lei apply where it has none."""
    ctx = _context(bootstrap)
    batch = find_batch(ctx.bootstrap, ctx.codec, batch_id, sorted(ctx.refdata_rails))
    if batch["export_format"] == "TOKEN_BATCH":
        raise InputError(
            f"{batch_id} is on token rail {batch['rail_id']}: "
            f"use `clearing export token {batch_id}`"
        )
    rail = ctx.refdata_rails.get(batch["rail_id"])
    operator_bic = getattr(rail, "operator_bic", None)
    house_account = str(getattr(rail, "clearing_house_account", None) or CLEARING_HOUSE)
    if operator_bic:
        house = Identity(bic=operator_bic)
    else:
        house = Identity(bic=clearing_house_bic or None, lei=clearing_house_lei or None)
    xml = pacs009_xml(batch, clearing_house=house or None, clearing_house_account=house_account)
    _write(out, xml, f"pacs.009.001.08 {batch_id} ({batch['instruction_count']} transactions)")


@export.command("token")
@click.argument("batch_id")
@out_option
@bootstrap_option
@_one_line_errors
@needs_broker
def export_token(batch_id: str, out: Path | None, bootstrap: str | None) -> None:
    """Write the transfer-batch JSON (token, decimals, transfers, total) of a token-rail batch.

    Values are integer strings in the rail's units (exact)."""
    ctx = _context(bootstrap)
    batch = find_batch(ctx.bootstrap, ctx.codec, batch_id, sorted(ctx.refdata_rails))
    if batch["export_format"] != "TOKEN_BATCH":
        raise InputError(
            f"{batch_id} is on ISO 20022 rail {batch['rail_id']}: "
            f"use `clearing export iso20022 {batch_id}`"
        )
    document = token_batch(batch)
    data = orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"
    _write(out, data, f"token batch {batch_id} ({len(document['transfers'])} transfers)")


# --------------------------------------------------------------------------- ack


def _ack_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """The file's rows; a CSV ``acked_at`` of digits is epoch milliseconds."""
    for number, row in read_rows(path):
        acked = row.get("acked_at")
        if isinstance(acked, str) and acked.strip().isdigit():
            row["acked_at"] = int(acked.strip())
        yield number, row


def encode_ack_file(path: Path, codec: Codec, catalog: SchemaCatalog) -> list[tuple[bytes, bytes]]:
    """(key, value) of every acknowledgement in the file; the first bad line raises."""
    schema = catalog.current(ACK_TYPE).parsed
    out: list[tuple[bytes, bytes]] = []
    for number, obj in _ack_rows(path):
        if len(out) >= ACK_LINES_MAX:
            raise InputError(f"{path}: more than {ACK_LINES_MAX} acknowledgements")
        try:
            record = from_json(schema, obj)
            if not str(record["batch_id"]).strip() or not str(record["instruction_id"]).strip():
                raise InputError("batch_id and instruction_id must not be empty")
            value = codec.encode(ACK_TYPE, record, topic=ACKS_TOPIC)
        except (InputError, CodecError) as exc:
            raise InputError(f"{path}:{number}: {ACK_TYPE}: {exc}") from None
        out.append((str(record["batch_id"]).encode(), value))
    if not out:
        raise InputError(f"{path}: no acknowledgements in the file")
    return out


@click.command("ack")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
@bootstrap_option
@_one_line_errors
@needs_broker
def ack(file: Path, as_json: bool, bootstrap: str | None) -> None:
    """Send settlement acknowledgements from a JSON-lines or CSV FILE.

    Fields are those of clearing.SettlementAck (acked_at: ISO 8601 with a zone, or
    epoch milliseconds). The whole file is checked first: one bad line sends nothing."""
    cfg = settings()
    catalog = SchemaCatalog.load()
    codec = codec_for(cfg, catalog)
    items = encode_ack_file(file, codec, catalog)
    sent = produce_all(Producer(producer_config(bootstrap or cfg.bootstrap())), ACKS_TOPIC, items)
    batches_acked = sorted({key.decode() for key, _ in items})
    if as_json:
        emit_json({"topic": ACKS_TOPIC, "sent": sent, "batches": batches_acked})
    else:
        err_console.print(f"{sent:,} acknowledgements for {len(batches_acked)} batches "
                          f"-> {ACKS_TOPIC}")  # fmt: skip


__all__ = ["ack", "batches", "export"]
