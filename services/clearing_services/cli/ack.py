"""``clearing ack``: a settlement bank's acknowledgements, one per instruction, from a
JSON-lines or CSV file to clearing.settlement.acks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from confluent_kafka import Producer

from clearing_core.encoding.codec import Codec, CodecError
from clearing_core.encoding.jsonrecord import from_json
from clearing_core.encoding.schemas import SchemaCatalog
from clearing_core.errors import InputError
from clearing_services.cli.common import (
    bootstrap_option,
    emit_json,
    err_console,
    json_option,
    needs_broker,
    one_line_errors,
    settings,
)
from clearing_services.kafka.clients import produce_all, producer_config
from clearing_services.kafka.codecs import codec_for
from clearing_services.kafka.topics import ACKS_TOPIC
from clearing_services.sources.event_files import read_rows

ACK_TYPE = "SettlementAck"
ACK_LINES_MAX = 1_000_000


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
@one_line_errors
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
