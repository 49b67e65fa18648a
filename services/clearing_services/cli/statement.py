"""``clearing statement``: a participant's statements per cycle, with each
instruction's status as its rail answered it and the running balance still owed
(``clearing_core.cycle.statements``), as a table, JSON or camt.054.001.08."""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from confluent_kafka import KafkaError
from rich.table import Table

from clearing_core.cycle.statements import FoldedStatement, fold
from clearing_core.encoding.codec import Codec, CodecError
from clearing_core.encoding.jsonrecord import to_json
from clearing_core.encoding.records import InstructionStatus, ParticipantStatement
from clearing_core.errors import InputError
from clearing_core.exports.documents import ExportError, minor_to_decimal
from clearing_services.cli.common import (
    bootstrap_option,
    emit_json,
    err_console,
    needs_broker,
    one_line_errors,
    out_console,
    settings,
)
from clearing_services.kafka.clients import admin_client, read_topic
from clearing_services.kafka.codecs import codec_for
from clearing_services.kafka.topics import participant_statement_topic
from clearing_services.kafka.waits import METADATA_TIMEOUT_SECONDS
from clearing_services.settings import process_client_security

FORMATS = ("table", "json", "camt054")


def statement_group(participant: str) -> str:
    """A throw-away group id; a participant's principal may use ``participant-<id>...``
    only (docs/security.md)."""
    prefix = "participant" if process_client_security().username else "clearing-statement"
    return f"{prefix}-{participant}-{uuid.uuid4().hex[:12]}"


def read_own_topic(
    bootstrap: str, codec: Codec, participant: str
) -> tuple[list[ParticipantStatement], dict[str, tuple[str, str | None]]]:
    """The participant's statements and its instructions' statuses, from its own topic
    (the only one its principal may read on a secure broker)."""
    topic = participant_statement_topic(participant)
    _check_readable(bootstrap, topic, participant)
    statements: dict[bytes, ParticipantStatement] = {}
    statuses: dict[str, tuple[str, str | None]] = {}
    for record in read_topic(bootstrap, topic, statement_group(participant)):
        try:
            decoded = codec.decode(record.value, topic=topic)
        except CodecError as exc:
            raise InputError(f"{topic}:{record.partition}:{record.offset}: {exc}") from None
        if decoded.name == "ParticipantStatement" and record.key is not None:
            statements[record.key] = decoded.as_record(ParticipantStatement)
        elif decoded.name == "InstructionStatus":
            status = decoded.as_record(InstructionStatus)
            statuses[status["instruction_id"]] = (status["status"], status.get("reason_code"))
        else:
            raise InputError(f"{topic}:{record.partition}:{record.offset}: a {decoded.name}, "
                             "not a statement or an instruction status")  # fmt: skip
    return list(statements.values()), statuses


def _check_readable(bootstrap: str, topic: str, participant: str) -> None:
    metadata = admin_client(bootstrap).list_topics(topic, timeout=METADATA_TIMEOUT_SECONDS)
    found = metadata.topics.get(topic)
    error = found.error if found is not None else None
    if error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
        raise InputError(f"this principal may not read {topic}: a participant reads its "
                         "own statements only")  # fmt: skip
    if found is None or error is not None:
        raise InputError(f"no statements for {participant} (no topic {topic})")


def _as_json(folded: FoldedStatement) -> dict[str, Any]:
    return {
        **to_json(dict(folded.statement)),
        "instructions": [{**to_json(dict(line.instruction)), "status": line.status,
                          "reason_code": line.reason_code} for line in folded.lines],
        "settled_minor": folded.settled_minor, "pending_minor": folded.pending_minor,
        "failed_minor": folded.failed_minor, "outstanding_minor": folded.outstanding_minor,
        "final": folded.final,
    }  # fmt: skip


def _table(participant: str, folded: list[FoldedStatement]) -> None:
    table = Table(title=f"statements of {participant}", title_justify="left")
    for name in ("cycle", "in", "out", "net", "settled", "pending", "failed", "outstanding"):
        table.add_column(name, justify="left" if name == "cycle" else "right")
    for f in folded:
        s, exp = f.statement, int(f.statement["currency_exponent"])

        def money(minor: int, exp: int = exp) -> str:
            return f"{minor_to_decimal(minor, exp):,}"

        table.add_row(
            s["cycle_id"], f"{s['obligations_in_count']}: {money(s['obligations_in_minor'])}",
            f"{s['obligations_out_count']}: {money(s['obligations_out_minor'])}",
            money(s["net_position_minor"]), money(f.settled_minor), money(f.pending_minor),
            money(f.failed_minor), money(f.outstanding_minor),
        )  # fmt: skip
    out_console.print(table)


@click.command("statement")
@click.option("--participant", required=True, help="The participant id.")
@click.option("--cycle", "cycle_id", default=None, help="One cycle (e.g. USD-00000003).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="camt054: write the XML here (default: stdout).")  # fmt: skip
@bootstrap_option
@one_line_errors
@needs_broker
def statement(
    participant: str, cycle_id: str | None, fmt: str, out: Path | None, bootstrap: str | None
) -> None:
    """A participant's statements per cycle: obligations in and out, net position, its
    instructions with their status, failures carried, and the running balance still
    owed (outstanding: negative is owed by the participant)."""
    cfg = settings()
    where = bootstrap or cfg.bootstrap()
    codec = codec_for(cfg)
    folded = fold(*read_own_topic(where, codec, participant))
    if cycle_id is not None:
        folded = [f for f in folded if f.statement["cycle_id"] == cycle_id]
    if not folded:
        raise InputError(f"no statement for {participant}"
                         + (f" in cycle {cycle_id}" if cycle_id else ""))  # fmt: skip
    if fmt == "json":
        emit_json({"participant_id": participant, "statements": [_as_json(f) for f in folded]})
    elif fmt == "table":
        _table(participant, folded)
    else:
        from clearing_core.exports import camt054

        try:
            data = camt054.xml(participant, folded, created_at=datetime.now(UTC))
        except ExportError as exc:
            raise InputError(str(exc)) from None
        if out is None:
            sys.stdout.buffer.write(data)
        else:
            out.write_bytes(data)
            err_console.print(f"camt.054.001.08 of {participant}: {len(folded)} cycles -> {out}")
