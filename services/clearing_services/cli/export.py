"""``clearing export iso20022|token``: one settlement batch for a bank's payment system
(pacs.009.001.08 XML) or for a token rail (a transfer batch)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import orjson

from clearing_core.encoding.codec import Codec
from clearing_core.errors import InputError
from clearing_core.exports.documents import CLEARING_HOUSE, Identity, token_batch
from clearing_services.cli.bank import bank_group, find_batch
from clearing_services.cli.common import (
    bootstrap_option,
    err_console,
    needs_broker,
    one_line_errors,
    settings,
)
from clearing_services.kafka.codecs import codec_for
from clearing_services.kafka.refdata import load_rails_from_topics


@dataclass(frozen=True)
class _Context:
    bootstrap: str
    codec: Codec
    refdata_rails: dict[str, Any]


def _context(bootstrap: str | None) -> _Context:
    cfg = settings()
    where = bootstrap or cfg.bootstrap()
    codec = codec_for(cfg)
    rails = load_rails_from_topics(where, codec, bank_group())
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
@one_line_errors
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
    from clearing_core.exports import pacs009  # the bindings: 80 ms, only for this command

    xml = pacs009.xml(batch, clearing_house=house or None, clearing_house_account=house_account)
    _write(out, xml, f"pacs.009.001.08 {batch_id} ({batch['instruction_count']} transactions)")


@export.command("token")
@click.argument("batch_id")
@out_option
@bootstrap_option
@one_line_errors
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
