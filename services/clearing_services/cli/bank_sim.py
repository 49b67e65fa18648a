"""``clearing bank simulate``: a settlement bank for an ISO 20022 rail, for the demo
and the tests.

It follows the rail's batches in a consumer group of its own, writes each pacs.009
it receives and the pacs.002 it answers under a folder (so a person can open
them), and sends the acknowledgements through ``report_items``, the code path of
``clearing ack FILE.xml``: the report is read back from the file, validated and
matched as a real bank's would be. Its offset is committed only after the acks
are acknowledged by the broker; a batch read again after a kill gets the same
answers (``simulated_bank``: seeded by instruction id), so the repeat changes
nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import click
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer

from clearing_core.encoding.codec import Codec, CodecError
from clearing_core.encoding.records import SettlementBatch
from clearing_core.errors import InputError
from clearing_core.exports.documents import Identity
from clearing_core.refdata.models import ExportFormat, Rail
from clearing_services.cli.ack import bank_identities, report_items
from clearing_services.cli.bank import bank_group, batch_in, until_signalled
from clearing_services.cli.common import (
    bootstrap_option,
    emit_json,
    err_console,
    json_option,
    needs_broker,
    one_line_errors,
    settings,
)
from clearing_services.kafka.clients import consumer_config, produce_all, producer_config
from clearing_services.kafka.codecs import codec_for
from clearing_services.kafka.refdata import load_rails_from_topics
from clearing_services.kafka.topics import ACKS_TOPIC, batch_topic
from clearing_services.kafka.waits import CONSUME_WAIT_SECONDS

POLL_RECORDS_MAX = 100


@dataclass
class Tally:
    """What the bank answered, for its summary line."""

    batches: int = 0
    settled: int = 0
    rejected: int = 0
    unreadable: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Bank:
    rail: Rail
    identities: Mapping[str, str]  # BIC -> participant id (``ack.bank_identities``)
    codec: Codec
    folder: Path
    reject_ratio: float
    seed: int

    @property
    def identity(self) -> Identity:
        return Identity(bic=self.rail.operator_bic)


def _write(path: Path, data: bytes) -> None:
    """Whole or not at all: a reader never sees half a document."""
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def answer(bank: Bank, batch: SettlementBatch, tally: Tally) -> list[tuple[bytes, bytes]]:
    """Receive one batch as pacs.009, answer it with a pacs.002: the acks to send."""
    from clearing_core.exports import pacs002, pacs009, simulated_bank

    batch_id = str(batch["batch_id"])
    received = bank.folder / f"{batch_id}.pacs009.xml"
    sent = pacs009.xml(batch, clearing_house=bank.identity or None,
                       clearing_house_account=bank.rail.clearing_house_account)  # fmt: skip
    _write(received, sent)
    pacs009.parse(received.read_bytes())  # what a bank's gateway does first
    outcomes = simulated_bank.outcomes(batch, bank.reject_ratio, bank.seed)
    report = pacs002.xml(batch, outcomes, message_id=f"STS-{batch_id}",
                         created_at=datetime.now(UTC), bank=bank.identity or None)  # fmt: skip
    answered = bank.folder / f"{batch_id}.pacs002.xml"
    _write(answered, report)
    items = report_items(answered.read_bytes(), [batch], bank.codec, None, bank.identities)
    rejected = [o for o in outcomes if o.status is pacs002.TxStatus.RJCT]
    tally.batches += 1
    tally.settled += len(outcomes) - len(rejected)
    tally.rejected += len(rejected)
    for outcome in rejected:
        code = str(outcome.reason_code)
        tally.reasons[code] = tally.reasons.get(code, 0) + 1
    codes = ", ".join(sorted({str(o.reason_code) for o in rejected}))
    err_console.print(f"{batch_id}: {len(outcomes) - len(rejected)} settled, {len(rejected)} "
                      f"rejected{f' ({codes})' if codes else ''} -> {answered}")  # fmt: skip
    return items


def _batch_of(bank: Bank, message: Message, tally: Tally) -> SettlementBatch | None:
    """The batch a record holds; a record that is not one is reported and counted."""
    value = message.value()
    topic = str(message.topic())
    try:
        return batch_in(bank.codec, topic, value if isinstance(value, bytes) else b"")
    except CodecError as exc:
        tally.unreadable += 1
        where = f"{message.topic()}:{message.partition()}:{message.offset()}"
        err_console.print(f"[yellow]{where}: not answered: {exc}[/]")
        return None


def _rail(rails: Mapping[str, Rail], rail_id: str) -> Rail:
    rail = rails.get(rail_id)
    if rail is None:
        raise InputError(f"unknown rail {rail_id!r} (rails: {', '.join(sorted(rails)) or 'none'})")
    if rail.export_format is not ExportFormat.ISO20022:
        raise InputError(f"{rail_id} is a {rail.export_format.value} rail: a bank answers "
                         "ISO 20022 rails only")  # fmt: skip
    return rail


@click.group("bank")
def bank() -> None:
    """A settlement bank for the ISO 20022 rails (simulated: for the demo and tests)."""


@bank.command("simulate")
@click.option("--rail", "rail_id", required=True, help="The ISO 20022 rail to answer.")
@click.option("--reject-ratio", type=click.FloatRange(0.0, 1.0), default=0.0,
              show_default=True,
              help="Share of instructions rejected (AM04, AC01, AB03, AB04, ED05, "
              "NARR).")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True, help="Which ones.")
@click.option("--out", "folder", type=click.Path(file_okay=False, path_type=Path),
              default=None,
              help="Where the documents go (default: "
              "$CLEARING_STATE_DIR/bank/<rail>).")  # fmt: skip
@click.option("--idle-exit", "idle_seconds", type=click.FloatRange(min=0.1), default=None,
              help="Stop after this many seconds without a batch (default: run until "
              "SIGINT or SIGTERM).")  # fmt: skip
@json_option
@bootstrap_option
@one_line_errors
@needs_broker
def simulate(
    rail_id: str, reject_ratio: float, seed: int, folder: Path | None,
    idle_seconds: float | None, as_json: bool, bootstrap: str | None,
) -> None:  # fmt: skip
    """Answer the rail's batches as its settlement bank: each pacs.009 received and
    each pacs.002 sent is written under the folder, and the acks go to
    clearing.settlement.acks as `clearing ack FILE.xml` would send them."""
    cfg = settings()
    where = bootstrap or cfg.bootstrap()
    codec = codec_for(cfg)
    rail = _rail(load_rails_from_topics(where, codec, bank_group()), rail_id)
    out = folder or cfg.state_dir / "bank" / rail_id
    out.mkdir(parents=True, exist_ok=True)
    sim = Bank(rail, bank_identities(where, codec), codec, out, reject_ratio, seed)
    tally = Tally()
    with until_signalled() as stop:
        _serve(sim, where, tally, stop.is_set, idle_seconds)
    summary = {"rail": rail_id, "folder": str(out), **vars(tally)}
    if as_json:
        emit_json(summary)
    else:
        err_console.print(f"{tally.batches} batches answered: {tally.settled} settled, "
                          f"{tally.rejected} rejected")  # fmt: skip


def _serve(
    bank: Bank, bootstrap: str, tally: Tally, stopped: Callable[[], bool],
    idle_seconds: float | None,
) -> None:  # fmt: skip
    """Poll, answer, send, then commit: the offset never passes an unanswered batch."""
    consumer = Consumer(consumer_config(bootstrap, bank_group(f"sim-{bank.rail.rail_id}")))
    producer = Producer(producer_config(bootstrap))
    consumer.subscribe([batch_topic(bank.rail.rail_id)])
    last_batch = time.monotonic()
    try:
        while not stopped():
            if idle_seconds is not None and time.monotonic() - last_batch > idle_seconds:
                return
            messages = consumer.consume(num_messages=POLL_RECORDS_MAX, timeout=CONSUME_WAIT_SECONDS)
            items: list[tuple[bytes, bytes]] = []
            read = 0
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue  # the end of a partition, not a record
                    raise KafkaException(error)
                read += 1
                batch = _batch_of(bank, message, tally)
                if batch is not None:
                    items += answer(bank, batch, tally)
                    last_batch = time.monotonic()
            if items:
                produce_all(producer, ACKS_TOPIC, items)
            if read:
                consumer.commit(asynchronous=False)
    finally:
        consumer.close()
