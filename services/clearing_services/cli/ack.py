"""``clearing ack``: a settlement bank's acknowledgements to clearing.settlement.acks,
from its pacs.002.001.10 status report (XML) or from a JSON-lines or CSV file, one
line per instruction.

The simulated bank (``cli/bank_sim.py``) sends its reports through
``report_items`` too: what the demo shows is what a real bank's file does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import click
from confluent_kafka import Producer

from clearing_core.encoding.codec import Codec, CodecError
from clearing_core.encoding.jsonrecord import from_json
from clearing_core.encoding.records import SettlementBatch
from clearing_core.encoding.schemas import SchemaCatalog
from clearing_core.errors import InputError
from clearing_core.exports.documents import ExportError, rail_of_batch_id
from clearing_core.refdata.models import ExportFormat
from clearing_services.cli.bank import bank_group, read_batches
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
from clearing_services.kafka.refdata import (
    NoReferenceDataError,
    load_rails_from_topics,
    load_refdata_from_topics,
)
from clearing_services.kafka.topics import ACKS_TOPIC
from clearing_services.settings import process_client_security
from clearing_services.sources.event_files import read_rows

ACK_TYPE = "SettlementAck"
ACK_LINES_MAX = 1_000_000
REPORT_BYTES_MAX = 64 * 1024 * 1024  # a pacs.002 of 100,000 transactions is about 60 MB


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


def is_xml(data: bytes) -> bool:
    """An XML document (a pacs.002), as opposed to JSON lines or CSV."""
    return data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<")


def report_items(
    data: bytes, batches: Iterable[SettlementBatch], codec: Codec, bank_id: str | None,
    identities: Mapping[str, str],
) -> list[tuple[bytes, bytes]]:  # fmt: skip
    """(key, value) of every acknowledgement a pacs.002 gives for ``batches``: the whole
    report validated and matched first, so one bad element sends nothing."""
    from clearing_core.exports import pacs002  # the bindings: only for XML
    from clearing_core.exports.status_report import (
        KnownBatches,
        acks_of_report,
        instructing_agent,
    )

    document = pacs002.parse(data)
    agent = instructing_agent(document)
    bank = bank_id or process_client_security().username or identities.get(agent or "", agent)
    if not bank:
        raise InputError("the report names no instructing agent (GrpHdr/InstgAgt): "
                         "give --bank-id")  # fmt: skip
    acks = acks_of_report(document, KnownBatches.of(batches), bank_id=bank)
    return [(a["batch_id"].encode(), codec.encode(ACK_TYPE, a, topic=ACKS_TOPIC)) for a in acks]


def bank_identities(bootstrap: str, codec: Codec) -> dict[str, str]:
    """BIC and LEI -> participant id, to name the bank of a report by its instructing
    agent; empty for a bank's principal, which names itself and may read no
    participants (docs/security.md)."""
    if process_client_security().username:
        return {}
    try:
        refdata = load_refdata_from_topics(bootstrap, codec, bank_group())
    except NoReferenceDataError:
        return {}
    return {ident: str(pid) for pid, p in refdata.participants.items()
            for ident in (p.bic, p.lei) if ident}  # fmt: skip


def _report_batches(
    bootstrap: str, codec: Codec, data: bytes, rails: tuple[str, ...]
) -> list[SettlementBatch]:
    """The batches a report may answer: those of ``rails``, else of the rails its
    message ids name, else of every ISO 20022 rail."""
    from clearing_core.exports import pacs002
    from clearing_core.exports.status_report import message_ids

    named, unnamed = message_ids(pacs002.parse(data))
    chosen = list(rails)
    if not chosen:
        try:
            chosen = sorted({rail_of_batch_id(m) for m in named}) if not unnamed else []
        except ExportError:
            chosen = []
    if not chosen:
        known = load_rails_from_topics(bootstrap, codec, bank_group())
        chosen = sorted(r.rail_id for r in known.values()
                        if r.export_format is ExportFormat.ISO20022)  # fmt: skip
    if not chosen:
        raise InputError("no rail to match the report against: give --rail")
    return [b for rail in chosen for b in read_batches(bootstrap, codec, rail)[0]]


def _read(path: Path) -> bytes:
    if path.stat().st_size > REPORT_BYTES_MAX:
        raise InputError(f"{path}: larger than {REPORT_BYTES_MAX // (1024 * 1024)} MB")
    return path.read_bytes()


@click.command("ack")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--rail", "rails", multiple=True,
              help="XML: match against this rail's batches (default: the rails the report "
              "names).")  # fmt: skip
@click.option(
    "--bank-id",
    default=None,
    help="XML: who acknowledges (default: the participant of GrpHdr/InstgAgt).",
)
@json_option
@bootstrap_option
@one_line_errors
@needs_broker
def ack(
    file: Path, rails: tuple[str, ...], bank_id: str | None, as_json: bool,
    bootstrap: str | None,
) -> None:  # fmt: skip
    """Send settlement acknowledgements from FILE: a pacs.002.001.10 status report, or
    JSON lines or CSV.

    pacs.002: TxSts ACSC -> SETTLED, RJCT -> FAILED with StsRsnInf/Rsn/Cd, ACSP/ACTC/
    PDNG -> PENDING; a group status ACSC or RJCT answers every transaction not listed.
    JSON lines or CSV: the fields of clearing.SettlementAck (acked_at: ISO 8601 with a
    zone, or epoch milliseconds). The whole file is checked first: one bad element or
    line sends nothing."""
    cfg = settings()
    where = bootstrap or cfg.bootstrap()
    catalog = SchemaCatalog.load()
    codec = codec_for(cfg, catalog)
    data = _read(file)
    if is_xml(data):
        batches = _report_batches(where, codec, data, rails)
        try:
            items = report_items(data, batches, codec, bank_id, bank_identities(where, codec))
        except ExportError as exc:
            raise InputError(f"{file}: {exc}") from None
    else:
        items = encode_ack_file(file, codec, catalog)
    sent = produce_all(Producer(producer_config(where)), ACKS_TOPIC, items)
    batches_acked = sorted({key.decode() for key, _ in items})
    if as_json:
        emit_json({"topic": ACKS_TOPIC, "sent": sent, "batches": batches_acked})
    else:
        err_console.print(f"{sent:,} acknowledgements for {len(batches_acked)} batches "
                          f"-> {ACKS_TOPIC}")  # fmt: skip
