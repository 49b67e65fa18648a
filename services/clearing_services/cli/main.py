"""The ``clearing`` command: one entry point, a group per area of work.

Errors are one line on stderr and a non-zero exit; data goes to stdout only,
so ``--json`` output can be piped.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import click
from confluent_kafka import KafkaError, KafkaException

from clearing_core.errors import ClearingError
from clearing_services.cli.ack import ack
from clearing_services.cli.bank import batches
from clearing_services.cli.bank_sim import bank
from clearing_services.cli.broker import broker, topics
from clearing_services.cli.chain import chain
from clearing_services.cli.common import configure_logging, log_level_option, settings
from clearing_services.cli.cycle import cycle
from clearing_services.cli.cycles import cycles
from clearing_services.cli.dashboard import dashboard
from clearing_services.cli.demo import demo
from clearing_services.cli.dlq import dlq
from clearing_services.cli.export import export
from clearing_services.cli.keys import keys
from clearing_services.cli.lag import lag
from clearing_services.cli.net import net
from clearing_services.cli.produce import produce
from clearing_services.cli.schemas import schemas
from clearing_services.cli.security import security
from clearing_services.cli.settle import settle
from clearing_services.cli.statement import statement
from clearing_services.cli.worker import refdata, replay, worker
from clearing_services.kafka.reachability import EX_UNAVAILABLE
from clearing_services.settings import tune_process_environment


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="clearing-house", prog_name="clearing")
@log_level_option
def cli(log_level: str) -> None:
    """Event-streaming clearing house for energy and AI compute."""
    configure_logging(log_level)
    settings()  # the settings of this invocation: a bad environment is one line, at once


cli.add_command(broker)
cli.add_command(topics)
cli.add_command(schemas)
cli.add_command(refdata)
cli.add_command(worker)
cli.add_command(replay)
cli.add_command(produce)
cli.add_command(keys)
cli.add_command(cycle)
cli.add_command(net)
cli.add_command(lag)
cli.add_command(dlq)
cli.add_command(dashboard)
cli.add_command(batches)
cli.add_command(export)
cli.add_command(ack)
cli.add_command(bank)
cli.add_command(statement)
cli.add_command(demo)
cli.add_command(security)
cli.add_command(chain)
cli.add_command(settle)
cli.add_command(cycles)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI; a ``ClearingError`` becomes ``error: ...`` and its exit code.

    Why the returned code: outside standalone mode click does not exit; it returns the
    code of a ``click.exceptions.Exit`` that a command raised (``replay``: 1 when a
    batch differs), which would otherwise be lost and the process exit 0."""
    tune_process_environment(os.environ)
    try:
        code = cli.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except ClearingError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KafkaException as exc:  # the cluster refused or lost a request: one line, not a trace
        error = exc.args[0] if exc.args else exc
        why = f"{error.name()}: {error.str()}" if isinstance(error, KafkaError) else str(error)
        click.echo(f"error: Kafka: {why} (try again; `clearing broker status` for a local "
                   "cluster)", err=True)  # fmt: skip
        sys.exit(EX_UNAVAILABLE)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    if isinstance(code, int) and code != 0:
        sys.exit(code)
