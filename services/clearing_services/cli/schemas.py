"""``clearing schemas list``: the Avro contract and its fingerprints."""

from __future__ import annotations

import click
from rich.table import Table

from clearing_core.encoding.schemas import SchemaCatalog
from clearing_services.cli.common import emit_json, json_option, out_console


@click.group()
def schemas() -> None:
    """The Avro schemas of schemas/*.avsc."""


@schemas.command("list")
@json_option
def schemas_list(as_json: bool) -> None:
    """Every record type with its CRC-64-AVRO fingerprint as it appears on the wire.

    Example: clearing schemas list
    """
    described = SchemaCatalog.load().describe()
    if as_json:
        emit_json({"schemas": described})
        return
    table = Table("name", "fingerprint (wire bytes)", "file")
    for row in described:
        table.add_row(row["name"], row["fingerprint"], row["source"])
    out_console.print(table)
