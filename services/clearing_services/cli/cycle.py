"""``clearing cycle close``: write a cycle-close marker for one currency."""

from __future__ import annotations

import getpass
import uuid
from datetime import UTC, datetime

import click

from clearing_core.cycle.markers import marker_record
from clearing_core.encoding.schemas import SchemaCatalog
from clearing_core.errors import InputError
from clearing_services.cli.common import (
    bootstrap_option,
    emit_json,
    err_console,
    json_option,
    needs_broker,
)
from clearing_services.cli.common import settings as current_settings
from clearing_services.kafka.codecs import codec_for
from clearing_services.kafka.refdata import load_refdata_from_topics
from clearing_services.netting.scheduler import send_markers

CURRENCY_CODE_LENGTH = 3


@click.group()
def cycle() -> None:
    """Clearing cycles (one per currency)."""


@cycle.command("close")
@click.option("--currency", required=True, help="Currency whose open cycle closes, e.g. CNH.")
@click.option("--by", "requested_by", default=None, help="Operator name (default: $USER).")
@bootstrap_option
@json_option
@needs_broker
def close(currency: str, requested_by: str | None, bootstrap: str | None, as_json: bool) -> None:
    """Close the open cycle of a currency now: everything before the marker nets in
    this cycle, everything after it in the next.

    Example: clearing cycle close --currency CNH
    """
    code = currency.strip().upper()
    if len(code) != CURRENCY_CODE_LENGTH or not code.isalpha():
        raise InputError(f"--currency {currency!r} is not a 3-letter currency code")
    cfg = current_settings()
    marker = marker_record(
        f"manual-{uuid.uuid4().hex}", code, "MANUAL", requested_by or getpass.getuser(),
        datetime.now(UTC),
    )  # fmt: skip
    kafka, codec = bootstrap or cfg.bootstrap(), codec_for(cfg, SchemaCatalog.load())
    refdata = load_refdata_from_topics(kafka, codec, group="clearing-refdata-load")
    send_markers(kafka, codec, [marker], refdata.obligation_partition)  # unknown: an error
    if as_json:
        emit_json({"marker_id": marker["marker_id"], "currency": code})
    else:
        err_console.print(f"cycle close requested for {code}: {marker['marker_id']}")
