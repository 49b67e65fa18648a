"""``clearing cycles``: each cycle with its finality per rail."""

from __future__ import annotations

from datetime import UTC, datetime

import click
from rich.table import Table

from clearing_core.encoding.schemas import SchemaCatalog
from clearing_core.errors import InputError
from clearing_services.cli.common import (
    bootstrap_option,
    emit_json,
    json_option,
    needs_broker,
    one_line_errors,
    out_console,
    settings,
)
from clearing_services.kafka.codecs import codec_for
from clearing_services.kafka.refdata import load_refdata_from_topics
from clearing_services.operations.finality import finality

LAST_MAX = 1_000


@click.command("cycles")
@click.option("--currency", default=None, help="Only this currency's cycles.")
@click.option("--last", type=click.IntRange(1, LAST_MAX), default=20, show_default=True,
              help="Cycles per currency, the most recent.")  # fmt: skip
@json_option
@bootstrap_option
@one_line_errors
@needs_broker
def cycles(currency: str | None, last: int, as_json: bool, bootstrap: str | None) -> None:
    """Each cycle with its finality: per rail, instructions settled, failed (their value
    carried into the next cycle) and pending; OVERDUE where pending past the rail's
    ack_timeout_seconds.

    Example: clearing cycles --currency CNH

    Example: clearing cycles --json
    """
    cfg = settings()
    kafka = bootstrap or cfg.bootstrap()
    codec = codec_for(cfg, SchemaCatalog.load())
    refdata = load_refdata_from_topics(kafka, codec, group="clearing-refdata-load")
    if currency is not None and currency not in refdata.currencies:
        raise InputError(f"unknown currency {currency!r} ({', '.join(sorted(refdata.currencies))})")
    found = finality(kafka, codec, refdata, currency, last)
    if as_json:
        emit_json({"cycles": found})
        return
    table = Table("cycle", "closed", "rail", "instructions", "settled", "failed", "pending",
                  "carried", "finality", box=None)  # fmt: skip
    for cycle in found:
        closed = cycle["closed_at_ms"]
        when = datetime.fromtimestamp(closed / 1000, UTC).strftime("%H:%M:%S") if closed else "-"
        for n, rail in enumerate(cycle["rails"] or [None]):
            head = (cycle["cycle_id"], when) if n == 0 else ("", "")
            if rail is None:
                table.add_row(*head, "-", "0", "", "", "", "", "FINAL")
                continue
            state = ("OVERDUE" if rail["overdue"] else "PENDING") if rail["pending"] else "FINAL"
            table.add_row(*head, rail["rail_id"], f"{rail['instructions']:,}",
                          f"{rail['settled']:,}", f"{rail['failed']:,}", f"{rail['pending']:,}",
                          f"{rail['carried_minor']:,}", state)  # fmt: skip
    out_console.print(table)
