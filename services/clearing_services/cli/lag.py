"""``clearing lag``: consumer lag per group, topic and partition, with Burrow-style
statuses (docs/operations-lag.md)."""

from __future__ import annotations

import sys
import time

import click
import orjson
from rich import box
from rich.console import Group as RenderGroup
from rich.live import Live
from rich.table import Table
from rich.text import Text

from clearing_core.operations.lag import OK, WARN, GroupReport, report_json
from clearing_services.cli.common import (
    bootstrap_option,
    emit_json,
    err_console,
    json_option,
    needs_broker,
    out_console,
)
from clearing_services.cli.common import settings as current_settings
from clearing_services.operations.lag import LagMonitor, sample_window

SAMPLES_MAX = 20
INTERVAL_SECONDS_MIN, INTERVAL_SECONDS_MAX = 0.1, 60.0
WINDOW_MAX = 1000
_STYLE = {OK: "green", WARN: "yellow"}


def _seconds(value: float | None) -> str:
    if value is None:
        return "?"
    if value < 120:
        return f"{value:.1f}s"
    if value < 7200:
        return f"{value / 60:.1f}m"
    return f"{value / 3600:.1f}h"


def render(groups: list[GroupReport], title: str = "") -> Table:
    """One table: a row per partition, the group's status on its first row."""
    table = Table(title=title or None, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("group", overflow="fold")
    table.add_column("state")
    table.add_column("members", justify="right")
    table.add_column("status")
    table.add_column("topic", overflow="fold")
    for name in ("part", "committed", "log end", "lag", "lag time"):
        table.add_column(name, justify="right")
    table.add_column("part status")
    for report in groups:
        status = Text(report.status, style=_STYLE.get(report.status, "bold red"))
        head: list[str | Text] = [report.group, report.state, str(report.members), status]
        if not report.partitions:
            table.add_row(*head, "-", "-", "-", "-", "0", "-", "-")
        for i, p in enumerate(report.partitions):
            cells: list[str | Text] = head if i == 0 else ["", "", "", ""]
            committed = "-" if p.committed_offset is None else f"{p.committed_offset:,}"
            lag = f"{p.lag:,}" + ("*" if p.committed_offset is None else "")
            table.add_row(
                *cells, p.topic, str(p.partition), committed, f"{p.log_end_offset:,}", lag,
                _seconds(p.lag_seconds), Text(p.status, style=_STYLE.get(p.status, "bold red")),
            )  # fmt: skip
    return table


def _footer(groups: list[GroupReport]) -> Text:
    notes = []
    if any(p.committed_offset is None for g in groups for p in g.partitions):
        notes.append("* no committed offset: lag counted from the log start")
    if not groups:
        notes.append("no consumer groups")
    return Text("\n".join(notes), style="dim")


@click.command("lag")
@click.option(
    "--group", "groups", multiple=True, metavar="G",
    help="Consumer group to report (repeatable; default: every group).",
)  # fmt: skip
@json_option
@click.option("--watch", is_flag=True, help="Refresh every --interval until Ctrl-C.")
@click.option(
    "--samples", type=click.IntRange(1, SAMPLES_MAX), default=3, show_default=True,
    help="One-shot mode: look at the committed offsets this many times to judge statuses.",
)  # fmt: skip
@click.option(
    "--interval", type=click.FloatRange(INTERVAL_SECONDS_MIN, INTERVAL_SECONDS_MAX), default=1.0,
    show_default=True, help="Seconds between samples (and refreshes with --watch).",
)  # fmt: skip
@click.option(
    "--window", type=click.IntRange(2, WINDOW_MAX), default=30, show_default=True,
    help="--watch: samples kept per partition for statuses and lag-time interpolation.",
)  # fmt: skip
@click.option(
    "--count", type=click.IntRange(1), default=None, hidden=True,
    help="--watch: stop after this many refreshes (for scripts and tests).",
)  # fmt: skip
@bootstrap_option
@needs_broker
def lag(
    groups: tuple[str, ...],
    as_json: bool,
    watch: bool,
    samples: int,
    interval: float,
    window: int,
    count: int | None,
    bootstrap: str | None,
) -> None:
    """Consumer lag per group, topic and partition: committed offset, log-end offset,
    lag (records) and lag time, with a status per partition (OK, WARN, STALL, STOP,
    REWIND) and per group (OK, WARN, ERR) judged over a window of samples, as Burrow
    does. The numbers are those of Kafka's `kafka-consumer-groups --describe`.

    Lag time is the age of the next unconsumed record, or, with --watch, when the
    log end passed the committed offset (interpolated in the sampled history).

    Examples: clearing lag; clearing lag --group clearing-netting --json;
    clearing lag --watch --interval 2
    """
    server = bootstrap or current_settings().bootstrap()
    if not watch:
        with LagMonitor(server, list(groups) or None, window=max(samples, 2)) as monitor:
            reports = sample_window(monitor, samples, interval)
        if as_json:
            emit_json(report_json(reports))
        else:
            out_console.print(render(reports))
            footer = _footer(reports)
            if footer.plain:
                out_console.print(footer)
        return
    monitor = LagMonitor(server, list(groups) or None, window=window)
    refreshes = 0
    try:
        if as_json:  # one compact JSON object per line and refresh
            while count is None or refreshes < count:
                if refreshes:
                    time.sleep(interval)
                monitor.sample()
                sys.stdout.write(orjson.dumps(report_json(monitor.report())).decode() + "\n")
                sys.stdout.flush()
                refreshes += 1
            return
        with Live(console=out_console, auto_refresh=False, transient=False) as live:
            while count is None or refreshes < count:
                if refreshes:
                    time.sleep(interval)
                monitor.sample()
                reports = monitor.report()
                title = f"consumer lag at {time.strftime('%H:%M:%S')} (every {interval:g} s)"
                live.update(RenderGroup(render(reports, title), _footer(reports)), refresh=True)
                refreshes += 1
    except KeyboardInterrupt:
        err_console.print("stopped")
    finally:
        monitor.close()
