"""``clearing dashboard``: the operators' web dashboard (docs/dashboard.md)."""

from __future__ import annotations

import click

from clearing_services.cli.common import bootstrap_option, err_console, needs_broker
from clearing_services.cli.common import settings as current_settings
from clearing_services.operations.dashboard import DEFAULT_PORT, SAMPLE_INTERVAL_SECONDS, serve


@click.command("dashboard")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port to listen on.")  # fmt: skip
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--interval", type=click.FloatRange(0.2), default=SAMPLE_INTERVAL_SECONDS,
              show_default=True, help="Seconds between lag and offset samples.")  # fmt: skip
@bootstrap_option
@needs_broker
def dashboard(port: int, host: str, interval: float, bootstrap: str | None) -> None:
    """A web page for operators: consumer lag per group and partition with statuses,
    events per second per event topic, cycles (gross, net, efficiency) as charts per
    currency, recent settlement batches per rail and dead-letter counts by reason.
    It refreshes itself every few seconds; nothing is fetched from outside.

    Example: clearing dashboard --port 8050, then open http://127.0.0.1:8050/
    """
    settings = current_settings()
    err_console.print(f"dashboard on http://{host}:{port}/ (Ctrl-C to stop)")
    serve(settings, host=host, port=port, bootstrap=bootstrap, interval_seconds=interval)
