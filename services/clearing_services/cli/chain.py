"""``clearing chain start|stop|status``: the embedded chain node (py-evm, JSON-RPC on
loopback, state under ``$CLEARING_STATE_DIR/chain``)."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import click

from clearing_services.chain.local import ChainStatus, LocalChain
from clearing_services.cli.common import (
    emit_json,
    err_console,
    json_option,
    one_line_errors,
    settings,
)

EXIT_STOPPED = 3  # as `clearing broker status`
EXIT_UNHEALTHY = 1

_home = click.option("--home", type=click.Path(path_type=Path),
                     help="State folder (default $CLEARING_STATE_DIR/chain).")  # fmt: skip
_port = click.option("--port", type=int, help="JSON-RPC port (default 8545, CLEARING_CHAIN_PORT).")


def local_chain(home: Path | None, port: int | None) -> LocalChain:
    cfg = settings()
    return LocalChain(home or cfg.chain_home, port or cfg.chain_port)


def _say(status: ChainStatus, verb: str) -> None:
    if status.state == "running":
        err_console.print(f"chain {verb}: {status.url} pid {status.pid} chain id "
                          f"{status.chain_id} block {status.block_number}")  # fmt: skip
    else:
        err_console.print(f"chain {status.state}: {status.url}")
    err_console.print(f"  state: {status.home}", style="dim")


@click.group()
def chain() -> None:
    """The embedded EVM chain that token rails settle on (docs/settlement.md)."""


@chain.command()
@_home
@_port
@json_option
@one_line_errors
def start(home: Path | None, port: int | None, as_json: bool) -> None:
    """Start the node (harmless when it runs); its state survives a restart.

    Example: clearing chain start --port 8545
    """
    status, started = local_chain(home, port).start()
    if as_json:
        emit_json({**asdict(status), "started": started})
    else:
        _say(status, "started" if started else "already running")


@chain.command()
@_home
@_port
@json_option
def stop(home: Path | None, port: int | None, as_json: bool) -> None:
    """Stop the node (SIGTERM, then kill after 15 s); its state stays on disk.

    Example: clearing chain stop
    """
    stopped = local_chain(home, port).stop()
    if as_json:
        emit_json({"stopped": stopped})
    else:
        err_console.print("chain stopped" if stopped else "chain was not running")


@chain.command()
@_home
@_port
@json_option
def status(home: Path | None, port: int | None, as_json: bool) -> None:
    """Whether the node answers JSON-RPC. Exit 0 running, 3 stopped, 1 unhealthy.

    Example: clearing chain status --json
    """
    current = local_chain(home, port).status()
    if as_json:
        emit_json(asdict(current))
    else:
        _say(current, current.state)
    if current.state != "running":
        sys.exit(EXIT_STOPPED if current.state == "stopped" else EXIT_UNHEALTHY)
