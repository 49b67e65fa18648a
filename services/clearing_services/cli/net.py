"""``clearing net``: offline netting of an obligations CSV, no broker needed.

A thin adapter: the library reads, validates, nets and checks; this module
only prints. Everything is computed before the first byte goes to stdout,
so an error leaves stdout empty (the entry point prints ``error: ...``).
"""

from __future__ import annotations

from pathlib import Path

import click
import orjson
from rich.console import Console
from rich.table import Table

from clearing_core.netting.report import OfflineNetting, net_csv_files, report_dict

INSTRUCTIONS_SHOWN = 20
CONSOLE_WIDTH_MIN = 110


@click.command("net")
@click.argument("obligations", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--limits",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="CSV with participant,currency,net_debit_cap_minor (absent = no cap).",
)
@click.option(
    "--mode",
    type=click.Choice(["hub", "direct"]),
    default="hub",
    show_default=True,
    help="hub: everyone settles with CLEARING_HOUSE; direct: participants pay each other.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def net(obligations: Path, limits: Path | None, mode: str, as_json: bool) -> None:
    """Net OBLIGATIONS (CSV: obligation_id,debtor,creditor,currency,amount_minor[,priority])."""
    netting = net_csv_files(obligations, limits, mode)
    if as_json:
        click.get_binary_stream("stdout").write(orjson.dumps(report_dict(netting)) + b"\n")
        return
    console = Console(highlight=False)
    console.width = max(console.width, CONSOLE_WIDTH_MIN)
    console.print(_summary_table(netting))
    for result in netting.result.currencies:
        console.print(_instruction_table(netting, result.currency_idx))


def _summary_table(netting: OfflineNetting) -> Table:
    table = Table(title=f"{Path(netting.table.path).name}: {len(netting.table):,} obligations")
    for name in ("currency", "gross", "net", "efficiency", "settled", "deferred", "instructions"):
        table.add_column(name, justify="left" if name == "currency" else "right")
    for result in netting.result.currencies:
        table.add_row(
            netting.currency_code(result),
            f"{result.gross_minor:,}",
            f"{result.net_minor:,}",
            f"{result.netting_efficiency:.1%}",
            f"{result.settled_gross_minor:,}",
            f"{result.deferred_count:,} ({result.deferred_minor:,})",
            f"{result.instruction_count:,}",
        )
    return table


def _instruction_table(netting: OfflineNetting, currency_idx: int) -> Table:
    result = next(r for r in netting.result.currencies if r.currency_idx == currency_idx)
    code = netting.currency_code(result)
    ins = result.instructions
    table = Table(title=f"{code} instructions ({result.mode}, amounts in minor units)")
    table.add_column("payer")
    table.add_column("payee")
    table.add_column("amount_minor", justify="right")
    rows = sorted(
        (netting.account(s), netting.account(t), a)
        for s, t, a in zip(
            ins.payer_idx.tolist(), ins.payee_idx.tolist(), ins.amount_minor.tolist(), strict=True
        )
    )
    for payer, payee, amount in rows[:INSTRUCTIONS_SHOWN]:
        table.add_row(payer, payee, f"{amount:,}")
    if len(rows) > INSTRUCTIONS_SHOWN:
        table.caption = f"... and {len(rows) - INSTRUCTIONS_SHOWN:,} more (use --json)"
    return table
