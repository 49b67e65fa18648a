"""Small helpers every command shares: settings, JSON output, a console for humans."""

from __future__ import annotations

import sys
from typing import Any

import click
import orjson
from rich.console import Console

from clearing_services.settings import Settings, load_settings

# Human-facing progress and tables go to stderr so stdout stays data-only.
# Outside a terminal (CI logs, pipes) rich would wrap at 80 columns; tables need more.
err_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 140)
out_console = Console(highlight=False, width=None if sys.stdout.isatty() else 140)


def settings() -> Settings:
    """The one settings object of this command invocation."""
    ctx = click.get_current_context()
    root = ctx.find_root()
    if not isinstance(root.obj, Settings):
        root.obj = load_settings()
    return root.obj


def emit_json(value: Any) -> None:
    """One JSON object on stdout, newline-terminated."""
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()


json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
bootstrap_option = click.option(
    "--bootstrap",
    envvar="KAFKA_BOOTSTRAP",
    default=None,
    help="Kafka bootstrap servers (default: KAFKA_BOOTSTRAP, else the local broker).",
)
