"""``clearing security provision``: SCRAM users and ACLs of the participants."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from clearing_core.encoding.schemas import SchemaCatalog
from clearing_core.refdata import ReferenceData, load_refdata
from clearing_services.cli.common import (
    bootstrap_option,
    emit_json,
    err_console,
    json_option,
    needs_broker,
    out_console,
    settings,
)
from clearing_services.kafka.clients import admin_client
from clearing_services.kafka.codecs import codec_for
from clearing_services.kafka.refdata import load_refdata_from_topics
from clearing_services.kafka.security import plan, provision


@click.group()
def security() -> None:
    """Principals and ACLs on a secure broker (docs/security.md)."""


def _refdata(file: Path | None, bootstrap: str) -> ReferenceData:
    if file is not None:
        return load_refdata(file)
    codec = codec_for(settings(), SchemaCatalog.load())
    return load_refdata_from_topics(bootstrap, codec, group="clearing-security-refdata")


@security.command("provision")
@click.option(
    "--refdata", "refdata_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Reference-data YAML (default: the clearing.refdata.* topics).",
)  # fmt: skip
@click.option(
    "--credentials", type=click.Path(dir_okay=False, path_type=Path),
    help="Passwords file, JSON, 0600 (default: <state dir>/security/principals.json).",
)  # fmt: skip
@bootstrap_option
@json_option
@needs_broker
def provision_command(
    refdata_file: Path | None, credentials: Path | None, bootstrap: str | None, as_json: bool
) -> None:
    """Connected as the operator (CLEARING_KAFKA_*), create a SCRAM user per participant
    and for the clearing service, and their ACLs; a second run changes nothing.

    Example: set -a; . .run/kafka/admin.env; set +a; clearing security provision --json
    """
    cfg = settings()
    if not cfg.kafka_security.secure:
        err_console.print("warning: not connected with SASL_SSL (CLEARING_KAFKA_*)", style="yellow")
    where = bootstrap or cfg.bootstrap()
    data = _refdata(refdata_file, where)
    path = credentials or cfg.state_dir / "security" / "principals.json"
    report = provision(admin_client(where), data, path)
    if as_json:
        emit_json({**report.as_dict(), "credentials": str(path)})
        return
    table = Table("principal", "role", "rails", "ACLs")
    for p in plan(data):
        table.add_row(p.principal, p.role, ", ".join(p.rails), str(len(p.grants)))
    out_console.print(table)
    if report.changed:
        err_console.print(
            f"users: {len(report.users_created)} created, {len(report.users_reset)} reset; "
            f"ACLs: {len(report.acls_created)} created, {len(report.acls_deleted)} deleted; "
            f"passwords in {path}"
        )
    else:
        err_console.print(f"nothing to change ({report.acls_unchanged} ACLs in place)")
