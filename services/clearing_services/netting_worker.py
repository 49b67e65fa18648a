"""The netting stage: a transactional consume-net-produce loop on clearing.obligations.

Why confluent-kafka transactions and not a Faust agent: a cycle holds up to
millions of obligations until its marker arrives, and none of them may be
committed before the cycle's outputs exist. The loop keeps the open cycle in
columnar ledgers, and at each marker writes the batches, positions, the cycle
report, the currency's state record and the consumer offsets in one Kafka
transaction. A crash before the commit leaves nothing visible to
read_committed readers; the restarted worker re-reads the open cycle.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from prometheus_client import Gauge

from clearing_core.avro_rows import columns_of, plan_of
from clearing_core.codec import TYPE_BYTES_MAX, Codec, CodecError, SingleObjectCodec
from clearing_core.cycle import CurrencyLedger, CycleContext, CycleOutcome, rehearse_close
from clearing_core.errors import ClearingError
from clearing_core.ingest import RawEvent, rejected_record
from clearing_core.ledger_columns import ObligationBatch, rows_of
from clearing_core.netting import warm_up
from clearing_services.failure import deadline
from clearing_services.kafka_io import consumer_config, producer_config, send_offsets
from clearing_services.metrics import Metrics
from clearing_services.netting_state import (
    STATE_TOPIC,
    CurrencyTrack,
    load_states,
    remember_counted_ids,
    state_record,
    track_from_state,
)
from clearing_services.rejections import count_rejections
from clearing_services.topics import (
    CYCLES_TOPIC,
    DLQ_TOPIC,
    OBLIGATIONS_TOPIC,
    POSITIONS_TOPIC,
    batch_topic,
)

GROUP = "clearing-netting"
STATE_BYTES_MAX = TYPE_BYTES_MAX["NettingState"]
CONSUME_BATCH_MAX = 20_000
TRANSACTION_SECONDS_MAX = 60.0
_log = logging.getLogger("clearing.netting")
# the Obligation fields the ledger counts, in ObligationBatch's order after its currency
_BATCH_FIELDS = ("obligation_id", "debtor_id", "creditor_id", "amount_minor", "priority",
                 "source", "remainder_ppm", "carry_key")  # fmt: skip
_COUNTED_FIELDS = ("currency", *_BATCH_FIELDS)


class NettingWorker:
    """Owns a consumer in the netting group and a transactional producer."""

    def __init__(
        self,
        bootstrap: str,
        codec: Codec,
        context_for: Callable[[str], CycleContext],
        worker_id: str,
        on_cycle: Callable[[CycleOutcome], None] | None = None,
        metrics: Metrics | None = None,
        warm_currencies: Sequence[str] = (),
    ) -> None:
        self.bootstrap = bootstrap
        self.codec = codec
        self.context_for = context_for
        self.on_cycle = on_cycle
        self.metrics = metrics or Metrics()
        # label children looked up once: labels() per obligation was 4% of a worker
        self._obligations_in = self.metrics.events_in.labels("netting", OBLIGATIONS_TOPIC)
        self._open_gauges: dict[str, Gauge] = {}
        self._obligation_plan = plan_of(codec, "Obligation")
        self.tracks: dict[str, CurrencyTrack] = {}
        self._pending_rejects: list[tuple[bytes, bytes]] = []
        overrides: dict[str, str | int | float | bool] = {
            "partition.assignment.strategy": "cooperative-sticky",
            # a killed worker's partitions move on within seconds
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 3_000,
        }
        self.consumer = Consumer(consumer_config(bootstrap, GROUP, **overrides))
        transactional: dict[str, str | int | float | bool] = {
            "transactional.id": f"clearing-netting-{worker_id}",
            # the netting state may reach its topic's 16 MiB (codec.TYPE_BYTES_MAX)
            "message.max.bytes": STATE_BYTES_MAX + (1 << 20),
        }
        self.producer = Producer(producer_config(bootstrap, **transactional))
        self.producer.init_transactions(30)
        warm_up()  # the first cycle close must not pay for loading the kernels
        for currency in warm_currencies:  # nor for those only a full close uses
            rehearse_close(context_for(currency), datetime.now(UTC))

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        mine = {tp.partition for tp in partitions}
        states = load_states(self.bootstrap, self.codec, group=f"{GROUP}-state")
        restored = [track_from_state(s) for s in states.values() if s["source_partition"] in mine]
        committed = consumer.committed(partitions, timeout=30)
        up_to = {tp.partition: max(tp.offset, 0) for tp in committed}
        remember_counted_ids(self.bootstrap, self.codec, restored, up_to)
        for track in restored:
            self.tracks[track.ledger.currency] = track
        _log.info(
            "netting: assigned partitions %s, restored %d currencies", sorted(mine), len(restored)
        )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {tp.partition for tp in partitions}
        for currency in [c for c, t in self.tracks.items() if t.partition in gone]:
            del self.tracks[currency]  # the next owner re-reads the open cycle from the log

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set; any unexpected error is raised to the caller,
        which must end the process (nothing past the last transaction was committed)."""
        self.consumer.subscribe(
            [OBLIGATIONS_TOPIC], on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        try:
            while not stop.is_set():
                self._handle_batch(self.consumer.consume(CONSUME_BATCH_MAX, timeout=0.5))
        finally:
            self.consumer.close()

    def _handle_batch(self, messages: list[Message]) -> None:
        """The batch in log order: each run of plain obligations between two other
        records (markers, errors, records the codec must read) is counted in bulk."""
        good, columns = self._plain_obligations(messages)
        rows = np.asarray(good, dtype=np.int64)  # message index of each column row
        plain = np.zeros(len(messages), dtype=bool)
        plain[rows] = True
        start = 0
        for i in [*np.flatnonzero(~plain).tolist(), len(messages)]:
            if start < i:  # messages[start:i] are rows lo..lo + (i - start) of the columns
                lo = int(np.searchsorted(rows, start))
                self._add_run(messages[start:i], columns, lo)
            if i < len(messages):
                self._handle(messages[i])
            start = i + 1

    def _plain_obligations(self, messages: list[Message]) -> tuple[list[int], dict[str, list[Any]]]:
        """The batch's plain obligations read in columns (a fraction of a codec decode
        each): their indices and the fields the ledger counts. Every other record is
        left to the codec."""
        if self._obligation_plan is None:
            return [], {}
        limit = self.codec.record_bytes_max if isinstance(self.codec, SingleObjectCodec) else 0
        values = [v if len(v) <= limit else b"" for v in (m.value() or b"" for m in messages)]
        errors = list(map(Message.error, messages))
        if set(map(type, errors)) != {type(None)}:  # by type: KafkaError == None raises
            values = [b"" if e is not None else v for e, v in zip(errors, values, strict=True)]
        return columns_of(self._obligation_plan, values, _COUNTED_FIELDS)

    def _add_run(self, messages: list[Message], columns: dict[str, list[Any]], lo: int) -> None:
        """Plain obligations, one ``add_batch`` per currency (a currency's own order kept)."""
        hi = lo + len(messages)
        run = {name: column[lo:hi] for name, column in columns.items()}
        log_ms = [t[1] for t in map(Message.timestamp, messages)]
        by_currency: dict[str, list[int]] = {}
        if len(set(run["currency"])) == 1:  # the usual case: the key is the currency
            by_currency[run["currency"][0]] = list(range(len(messages)))
        else:
            for i, currency in enumerate(run["currency"]):
                by_currency.setdefault(currency, []).append(i)
        for currency, rows in by_currency.items():
            pick = rows_of(None if len(rows) == len(messages) else rows)
            track = self.tracks.get(currency)
            if track is None:
                partition = int(messages[rows[0]].partition() or 0)
                track = self.tracks[currency] = CurrencyTrack(CurrencyLedger(currency), partition)
            ids, debtors, creditors, amounts, priorities, sources, ppms, keys = (
                pick(run[f]) for f in _BATCH_FIELDS
            )
            batch = ObligationBatch(currency, ids, debtors, creditors, amounts, priorities,
                                    sources, ppms, keys, pick(log_ms))  # fmt: skip
            duplicates = track.ledger.add_batch(batch)
            self._obligations_in.inc(len(rows))
            if duplicates:
                self.metrics.duplicates.labels(currency).inc(duplicates)
            self._open_gauge(currency).set(track.ledger.open_count)

    def _handle(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            raise KafkaException(error)
        value = message.value() or b""
        partition, offset = int(message.partition() or 0), int(message.offset() or 0)
        log_time = datetime.fromtimestamp(message.timestamp()[1] / 1000, tz=UTC)
        try:
            decoded = self.codec.decode(value)
        except CodecError as exc:
            self._reject(message, exc.reason_code, str(exc))
            return
        record = decoded.record
        currency = str(record.get("currency", ""))
        track = self.tracks.get(currency)
        if track is None:
            track = self.tracks[currency] = CurrencyTrack(CurrencyLedger(currency), partition)
        if decoded.name == "Obligation":
            self._obligations_in.inc()
            if not track.ledger.add(record, log_time):
                self.metrics.duplicates.labels(currency).inc()
            self._open_gauge(currency).set(track.ledger.open_count)
        elif decoded.name == "CycleClose":
            self._close(track, record, partition, offset, log_time)
        else:
            self._reject(message, "WRONG_SCHEMA", f"{decoded.name} on {OBLIGATIONS_TOPIC}")

    def _open_gauge(self, currency: str) -> Gauge:
        gauge = self._open_gauges.get(currency)
        if gauge is None:
            gauge = self._open_gauges[currency] = self.metrics.open_obligations.labels(currency)
        return gauge

    def _reject(self, message: Message, reason_code: str, text: str) -> None:
        """Remember a rejection; it is written in the next cycle's transaction."""
        self.metrics.rejects.labels("netting", reason_code).inc()
        event = RawEvent(
            OBLIGATIONS_TOPIC, int(message.partition() or 0), int(message.offset() or 0),
            message.key(), message.value() or b"", int(message.timestamp()[1]),
        )  # fmt: skip
        record = rejected_record(event, reason_code, text, stage="netting")
        value = self.codec.encode("Rejected", record, topic=DLQ_TOPIC)
        self._pending_rejects.append((OBLIGATIONS_TOPIC.encode(), value))

    def _close(
        self, track: CurrencyTrack, marker: dict[str, Any], partition: int, offset: int,
        log_time: datetime,
    ) -> None:  # fmt: skip
        if marker["marker_id"] in track.marker_ids:
            return  # the same marker twice (two schedulers, a retry): it closed already
        t0 = time.perf_counter()
        context = self.context_for(track.ledger.currency)
        ledger = track.ledger
        previous_close = ledger.opened_at if ledger.cycle_seq > 0 else None
        rejected = count_rejections(
            self.bootstrap, self.codec, ledger.currency, previous_close, log_time
        )
        counted = time.perf_counter()
        outcome = track.ledger.close(marker, log_time, context, rejected_count=rejected)
        track.closed(marker["marker_id"], offset)
        netted = time.perf_counter()
        _log.info(
            "netting: %s closed: rejections counted in %.0f ms, netted in %.0f ms",
            outcome.report["cycle_id"],
            1000 * (counted - t0),
            1000 * (netted - counted),
        )
        self._emit(outcome, track, partition, offset, t0, netted)
        self.metrics.cycle_closed(outcome.report, time.perf_counter() - t0)
        if self.on_cycle is not None:
            self.on_cycle(outcome)

    def _emit(
        self, outcome: CycleOutcome, track: CurrencyTrack, partition: int, offset: int,
        t0: float, netted: float,
    ) -> None:  # fmt: skip
        """One transaction: batches, positions, report, state, DLQ, offsets; a transaction
        that hangs past twice its timeout ends the process (failure.deadline)."""
        with deadline(
            2 * TRANSACTION_SECONDS_MAX, f"the transaction of {outcome.report['cycle_id']}"
        ):
            self._transact(outcome, track, partition, offset, t0, netted)

    def _transact(
        self, outcome: CycleOutcome, track: CurrencyTrack, partition: int, offset: int,
        t0: float, netted: float,
    ) -> None:  # fmt: skip
        encode = self.codec.encode

        def produce(topic: str, *, key: bytes, value: bytes) -> None:
            self.producer.produce(topic, key=key, value=value)
            self.metrics.records_out.labels(topic).inc()

        self.producer.begin_transaction()
        try:
            for batch in outcome.batches:
                topic = batch_topic(batch["rail_id"])
                produce(
                    topic,
                    key=batch["batch_id"].encode(),
                    value=encode("SettlementBatch", batch, topic=topic),
                )
            for position in outcome.positions:
                key = f"{position['participant_id']}/{position['currency']}".encode()
                produce(
                    POSITIONS_TOPIC,
                    key=key,
                    value=encode("Position", position, topic=POSITIONS_TOPIC),
                )
            for key, value in self._pending_rejects:
                produce(DLQ_TOPIC, key=key, value=value)
            state = state_record(track)
            produce(
                STATE_TOPIC,
                key=track.ledger.currency.encode(),
                value=encode("NettingState", state, topic=STATE_TOPIC),
            )
            report = dict(outcome.report)
            done = time.perf_counter()
            report["timings"] = {
                "netting_ms": (netted - t0) * 1000, "emit_ms": (done - netted) * 1000,
                "close_to_batch_ms": (done - t0) * 1000,
            }  # fmt: skip
            produce(
                CYCLES_TOPIC,
                key=track.ledger.currency.encode(),
                value=encode("CycleReport", report, topic=CYCLES_TOPIC),
            )
            offsets = [TopicPartition(OBLIGATIONS_TOPIC, partition, offset + 1)]
            what = f"the offsets of {outcome.report['cycle_id']}"
            send_offsets(self.producer, offsets, self.consumer, what)
            self.producer.commit_transaction(TRANSACTION_SECONDS_MAX)
        except (KafkaException, ClearingError):
            self.producer.abort_transaction(TRANSACTION_SECONDS_MAX)
            raise
        self._pending_rejects.clear()
