"""Small helpers every command shares: settings, JSON output, a console for humans."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import click
import orjson
from rich.console import Console

from clearing_core.errors import ClearingError
from clearing_services.kafka.clients import show_rdkafka_logs
from clearing_services.kafka.reachability import require_broker
from clearing_services.settings import Settings, load_settings

P = ParamSpec("P")
R = TypeVar("R")

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


def needs_broker(command: Callable[P, R]) -> Callable[P, R]:
    """For a command that talks to Kafka: before anything else, one metadata request to
    its broker (``--bootstrap``, else the settings' address) under the settings'
    ``broker_timeout_seconds``; no answer is one line and exit 69
    (``reachability.require_broker``), not a traceback after a minute."""

    @functools.wraps(command)
    def checked(*args: P.args, **kwargs: P.kwargs) -> R:
        cfg = settings()
        given = kwargs.get("bootstrap")
        require_broker(given if isinstance(given, str) and given else cfg.bootstrap(),
                       cfg.broker_timeout_seconds)  # fmt: skip
        return command(*args, **kwargs)

    return checked


def one_line_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """A ``ClearingError`` becomes ``error: ...`` on stderr and its exit code, also
    when the command runs outside ``main`` (tests, embedding)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ClearingError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper


LOG_LEVELS = ("debug", "info", "warn", "error")
log_level_option = click.option(
    "--log-level", type=click.Choice(LOG_LEVELS), default="warn", envvar="CLEARING_LOG_LEVEL",
    show_default=True, help="Log level (also CLEARING_LOG_LEVEL); debug also shows "
    "librdkafka's own log lines.",
)  # fmt: skip


def configure_logging(level: str, *, service: bool = False) -> None:
    """Log records at ``level`` and above to stderr (a handler is added unless the
    process has one; a command may call it again to change the level). librdkafka's
    own lines (``show_rdkafka_logs``) only at debug, but a ``service`` (the worker,
    whose stderr is its log) keeps librdkafka's errors, such as a lost connection."""
    numeric = logging.getLevelNamesMapping()[level.upper().replace("WARN", "WARNING")]
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(numeric)
    show_rdkafka_logs(numeric if service or numeric <= logging.DEBUG else None)


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
