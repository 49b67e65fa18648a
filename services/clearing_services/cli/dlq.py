"""``clearing dlq``: count, show and re-drive the dead letters.

What an operator does with a rejection: see how many there are and why
(``count``), look at them as they were sent (``show``: decoded where the bytes
decode, hex otherwise, with their headers), fix the cause (usually the reference
data) and send them again (``redrive``: exactly once per dead letter; see
``operations/dlq.py``).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from clearing_core.encoding.jsonrecord import to_json
from clearing_core.encoding.schemas import SchemaCatalog
from clearing_core.errors import InputError
from clearing_core.operations.dead_letters import (
    PERMANENT_REASONS,
    CountBy,
    DeadLetter,
    count_by,
    parse_since,
    redrive_refusal,
)
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
from clearing_services.kafka.codecs import codec_for
from clearing_services.kafka.topics import DLQ_TOPIC as DLQ
from clearing_services.operations.dlq import (
    DlqReading,
    plan_redrive,
    read_dead_letters,
    redrive,
    redriven_keys,
)

LAST_MAX = 10_000
HEX_SHOWN_MAX = 256  # bytes of an undecodable original shown in the table (all in --json)
LISTED_MAX = 20  # refused letters named one per line, then a count

since_option = click.option(
    "--since", default=None, metavar="T",
    help="Only dead letters from T on: an age (30m, 2h, 7d) or a time (2026-12-07T09:00Z).",
)  # fmt: skip


@click.group("dlq")
def dlq() -> None:
    """The dead-letter queue: count, show and re-drive what the pipeline refused."""


def _read(bootstrap: str | None, since: str | None) -> DlqReading:
    cfg = settings()
    kafka = bootstrap or cfg.bootstrap()
    since_ms = None
    if since is not None:
        since_ms = int(parse_since(since, datetime.now(UTC)).timestamp() * 1000)
    reading = read_dead_letters(kafka, codec_for(cfg, SchemaCatalog.load()), since_ms)
    for line in reading.unreadable:
        err_console.print(f"[yellow]{escape(line)}[/]")
    return reading


@dlq.command("count")
@click.option("--by", "by", type=click.Choice([c.value for c in CountBy]), default="reason",
              show_default=True, help="Group the dead letters by this.")  # fmt: skip
@since_option
@json_option
@bootstrap_option
@one_line_errors
@needs_broker
def count(by: str, since: str | None, as_json: bool, bootstrap: str | None) -> None:
    """How many dead letters there are, by reason, source topic or participant (who
    sent the record).

    Example: clearing dlq count

    Example: clearing dlq count --by participant --since 2h --json
    """
    reading = _read(bootstrap, since)
    counts = count_by(reading.letters, CountBy(by))
    total = len(reading.letters)
    if as_json:
        emit_json({"by": by, "since": since, "total": total, "unreadable": len(reading.unreadable),
                   "counts": dict(counts)})  # fmt: skip
        return
    table = Table(box=None)
    table.add_column(by)
    table.add_column("dead letters", justify="right")
    for label, n in counts:
        table.add_row(escape(label), f"{n:,}")
    table.add_row("[bold]total[/]", f"[bold]{total:,}[/]")
    out_console.print(table)


@dlq.command("show")
@click.option("--reason", default=None, help="Only dead letters of this reason code.")
@click.option("--last", type=click.IntRange(1, LAST_MAX), default=10, show_default=True,
              help="The most recent this many.")  # fmt: skip
@since_option
@json_option
@bootstrap_option
@one_line_errors
@needs_broker
def show(
    reason: str | None, last: int, since: str | None, as_json: bool, bootstrap: str | None
) -> None:
    """The dead letters as they were sent: the original decoded where its bytes decode
    (hex otherwise), its headers, where it came from and why it was refused.

    Example: clearing dlq show --reason UNKNOWN_CONTRACT --last 5

    Example: clearing dlq show --last 1 --json
    """
    letters = [d for d in _read(bootstrap, since).letters
               if reason is None or d.rejected["reason_code"] == reason]  # fmt: skip
    letters.sort(key=lambda d: (d.rejected["rejected_at"], d.partition, d.offset))
    shown = letters[-last:]
    if as_json:
        emit_json({"matching": len(letters), "shown": len(shown),
                   "dead_letters": [_as_json(d) for d in shown]})  # fmt: skip
        return
    for letter in shown:
        _print_letter(letter)
    out_console.print(f"{len(shown):,} shown of {len(letters):,} matching")


def _header_text(value: bytes) -> str:
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return value.hex()
    return text if text.isprintable() else value.hex()


def _as_json(letter: DeadLetter) -> dict[str, Any]:
    r = letter.rejected
    return {
        "dlq": letter.where, "rejected_at": to_json(r["rejected_at"]), "stage": r["stage"],
        "reason_code": r["reason_code"], "message": r["message"],
        "source": f"{r['source_topic']}@{r['source_partition']}:{r['source_offset']}",
        "event_id": r.get("event_id"), "participant": letter.participant,
        "key": _header_text(r["source_key"]) if r["source_key"] is not None else None,
        "headers": [{"name": h["name"], "value": _header_text(h["value"])}
                    for h in r.get("headers", [])],
        "original_type": letter.decoded_type,
        "original": to_json(dict(letter.decoded)) if letter.decoded is not None else None,
        "original_hex": None if letter.decoded is not None else r["original"].hex(),
        "redrive": redrive_refusal(letter) or "possible",
    }  # fmt: skip


def _print_letter(letter: DeadLetter) -> None:
    shown = _as_json(letter)
    out_console.print(
        f"[bold]{DLQ}@{shown['dlq']}[/] {shown['rejected_at']} {shown['stage']} "
        f"[red]{shown['reason_code']}[/] from {escape(shown['source'])}"
    )
    out_console.print(f"  {escape(shown['message'])}")
    who = f"participant {shown['participant']}, event {shown['event_id'] or '-'}"
    out_console.print(f"  {escape(who)}, key {escape(str(shown['key']))}")
    for header in shown["headers"]:
        out_console.print(f"  header {escape(header['name'])}: {escape(header['value'])}")
    if shown["original"] is not None:
        as_text = json.dumps(shown["original"], ensure_ascii=False)
        out_console.print(f"  {shown['original_type']}: {escape(as_text)}")
    else:
        data: bytes = letter.rejected["original"]
        more = f" ... ({len(data):,} bytes)" if len(data) > HEX_SHOWN_MAX else ""
        out_console.print(f"  original (hex): {data[:HEX_SHOWN_MAX].hex()}{more}")
    out_console.print(f"  re-drive: {escape(shown['redrive'])}\n")


@dlq.command("redrive")
@click.option("--reason", required=True, help="Send again the dead letters of this reason code.")
@since_option
@click.option("--dry-run", is_flag=True, help="Say what would be sent; send nothing.")
@json_option
@bootstrap_option
@one_line_errors
@needs_broker
def redrive_command(
    reason: str, since: str | None, dry_run: bool, as_json: bool, bootstrap: str | None
) -> None:
    """Send the dead letters of one reason again to their source topics (their bytes,
    key and headers unchanged), after the cause is fixed: each exactly once, however
    often this runs or wherever it was interrupted. Reasons a retry cannot change
    (malformed Avro, a bad signature, ...) are refused.

    Example: clearing dlq redrive --reason UNKNOWN_CONTRACT --dry-run

    Example: clearing dlq redrive --reason UNKNOWN_CONTRACT --since 1d
    """
    if reason in PERMANENT_REASONS:
        raise InputError(f"{reason} is about the bytes themselves: the same record would be "
                         "refused again, so it is never re-driven")  # fmt: skip
    cfg = settings()
    kafka = bootstrap or cfg.bootstrap()
    letters = [d for d in _read(kafka, since).letters if d.rejected["reason_code"] == reason]
    plan = plan_redrive(letters, redriven_keys(kafka))
    for letter, why in plan.refused[:LISTED_MAX]:
        err_console.print(f"[yellow]{DLQ}@{letter.where}: not re-driven: {escape(why)}[/]")
    if len(plan.refused) > LISTED_MAX:
        err_console.print(f"[yellow]... and {len(plan.refused) - LISTED_MAX:,} more refused[/]")
    started = time.monotonic()
    sent = 0 if dry_run else redrive(kafka, codec_for(cfg, SchemaCatalog.load()), plan.to_send)
    summary = {"reason": reason, "since": since, "matching": len(letters), "dry_run": dry_run,
               "sent": sent, "would_send": len(plan.to_send) if dry_run else 0,
               "redriven_before": len(plan.done_before), "refused": len(plan.refused),
               "seconds": round(time.monotonic() - started, 3)}  # fmt: skip
    if as_json:
        emit_json(summary)
        return
    verb = f"would send {len(plan.to_send):,}" if dry_run else f"sent {sent:,}"
    out_console.print(f"{reason}: {len(letters):,} dead letters; {verb}; "
                      f"{len(plan.done_before):,} re-driven before; "
                      f"{len(plan.refused):,} refused")  # fmt: skip
