"""``clearing worker``, ``clearing refdata`` and ``clearing replay``."""

from __future__ import annotations

from pathlib import Path

import click

from clearing_core.encoding.schemas import SchemaCatalog
from clearing_core.refdata import load_default_refdata, load_refdata
from clearing_services.cli.common import (
    LOG_LEVELS,
    bootstrap_option,
    configure_logging,
    emit_json,
    err_console,
    json_option,
    needs_broker,
    settings,
)
from clearing_services.kafka.clients import admin_client
from clearing_services.kafka.codecs import codec_for
from clearing_services.kafka.refdata import load_refdata_from_topics, publish_refdata
from clearing_services.kafka.topics import create_topics, load_topic_plan
from clearing_services.operations.replay import replay as run_replay
from clearing_services.process.worker import ROLES, parse_roles, run_worker


def _worker_log_level(ctx: click.Context, _param: click.Parameter, value: str | None) -> str:
    """The worker's level, else ``clearing --log-level``'s, set while the arguments are
    read: before the broker check, whose librdkafka lines debug shows."""
    level = str(value or ctx.find_root().params.get("log_level") or "warn")
    configure_logging(level, service=True)
    return level


@click.command()
@click.argument("role", default="all", metavar="[all|" + "|".join(ROLES) + "|ROLE,ROLE]")
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default=None,
              envvar="CLEARING_LOG_LEVEL", callback=_worker_log_level,
              help="Log level (default: that of clearing --log-level).")  # fmt: skip
@needs_broker
def worker(role: str, log_level: str) -> None:
    """Run a worker: the ingest loop, the netting loop, the acks agent, the settlement
    agents of the token rails on the embedded chain, all of them, or a comma list.
    Several processes share the partitions through consumer groups.

    Example: clearing worker all

    Example: clearing worker ingest,netting,acks
    """
    parse_roles(role)  # a wrong role is one line before anything starts
    cfg = settings()
    run_worker(cfg, codec_for(cfg, SchemaCatalog.load()), role, log_level)


@click.group()
def refdata() -> None:
    """Reference data: participants, rails, contracts, price books, payment kinds."""


@refdata.command("publish")
@click.argument(
    "file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@bootstrap_option
@json_option
@needs_broker
def refdata_publish(file: Path | None, bootstrap: str | None, as_json: bool) -> None:
    """Validate a reference-data YAML file (default: the embedded data set) and publish
    it to the compacted clearing.refdata.* topics in one transaction.

    Example: clearing refdata publish my-refdata.yaml
    """
    cfg = settings()
    data = load_refdata(file) if file else load_default_refdata()
    codec = codec_for(cfg, SchemaCatalog.load())
    where = bootstrap or cfg.bootstrap()
    create_topics(admin_client(where), load_topic_plan().for_rails(data.rails, data.participants))
    count = publish_refdata(where, codec, data, by=cfg.worker_id)
    summary = {"records": count, "digest": data.digest, "participants": len(data.participants),
               "rails": sorted(data.rails), "currencies": sorted(data.currencies)}  # fmt: skip
    if as_json:
        emit_json(summary)
    else:
        err_console.print(
            f"published {count} records (digest {data.digest[:16]}): "
            f"{len(data.participants)} participants, rails {', '.join(sorted(data.rails))}"
        )


@click.command()
@bootstrap_option
@json_option
@needs_broker
def replay(bootstrap: str | None, as_json: bool) -> None:
    """Re-net clearing.obligations from the beginning and compare every settlement
    batch with what was emitted, byte for byte. Exit 1 when any batch differs.

    Example: clearing replay --json
    """
    cfg = settings()
    codec = codec_for(cfg, SchemaCatalog.load())
    where = bootstrap or cfg.bootstrap()
    latest = load_refdata_from_topics(where, codec, group="clearing-replay-refdata")
    report = run_replay(where, codec, latest, latest.rails)
    if as_json:
        emit_json(report.as_dict())
    else:
        err_console.print(report.summary(), soft_wrap=True)
    for line in report.problems():
        err_console.print(f"replay: {line}", markup=False, soft_wrap=True)
    if not report.ok:
        raise click.exceptions.Exit(1)
