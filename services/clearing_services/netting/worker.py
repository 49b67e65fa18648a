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

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from prometheus_client import Gauge

from clearing_core.cycle.context import ContextsInForce
from clearing_core.cycle.ledger import CycleOutcome, rehearse_close
from clearing_core.cycle.log_fold import Closing, CurrencyTrack, LogFold, LogSlice
from clearing_core.cycle.rejections import rejection_window
from clearing_core.cycle.state import state_record, track_from_state
from clearing_core.encoding.codec import TYPE_BYTES_MAX, Codec
from clearing_core.errors import ClearingError
from clearing_core.ingest.batch import RawEvent
from clearing_core.ingest.records import rejected_record
from clearing_core.netting import warm_up
from clearing_core.refdata.versions import VERSIONS_TOPIC, version_record
from clearing_services.kafka.clients import consumer_config, producer_config, send_offsets
from clearing_services.kafka.topics import (
    CYCLES_TOPIC,
    DLQ_TOPIC,
    OBLIGATIONS_TOPIC,
    POSITIONS_TOPIC,
    STATEMENTS_TOPIC,
    ParticipantTopics,
    batch_topic,
    participant_statement_topic,
)
from clearing_services.kafka.waits import CONSUME_WAIT_SECONDS
from clearing_services.netting.rejections import count_rejections
from clearing_services.netting.state import STATE_TOPIC, load_states, remember_counted_ids
from clearing_services.runtime.failure import deadline
from clearing_services.runtime.metrics import Metrics

GROUP = "clearing-netting"
STATE_BYTES_MAX = TYPE_BYTES_MAX["NettingState"]
CONSUME_BATCH_MAX = 20_000
TRANSACTION_SECONDS_MAX = 60.0
COMMITTED_SECONDS_MAX = 30.0  # the group's committed offsets, asked once per assignment
METADATA_REFRESH_MS = 10_000  # librdkafka's default is 5 minutes
_log = logging.getLogger("clearing.netting")


class NettingWorker:
    """Owns a consumer in the netting group and a transactional producer; drives the
    fold of the log (``clearing_core.cycle.log_fold``) as its ``FoldSink``."""

    def __init__(
        self,
        bootstrap: str,
        codec: Codec,
        contexts: ContextsInForce,
        worker_id: str,
        on_cycle: Callable[[CycleOutcome], None] | None = None,
        metrics: Metrics | None = None,
        warm_currencies: Sequence[str] = (),
        statement_topics: ParticipantTopics | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.codec = codec
        self.worker_id = worker_id
        self.on_cycle = on_cycle
        self.metrics = metrics or Metrics()
        # label children looked up once: labels() per obligation was 4% of a worker
        self._obligations_in = self.metrics.events_in.labels("netting", OBLIGATIONS_TOPIC)
        self._open_gauges: dict[str, Gauge] = {}
        self.contexts = contexts
        self.fold = LogFold(codec, contexts, self)
        self._versions_recorded: set[str] = set()  # by this process, in a committed close
        self.statement_topics = statement_topics or ParticipantTopics(bootstrap)
        self._messages: list[Message] = []  # the poll the fold is reading
        self._pending_rejects: list[tuple[bytes, bytes]] = []
        self._close_started = self._rejections_counted = 0.0
        overrides: dict[str, str | int | float | bool] = {
            "partition.assignment.strategy": "cooperative-sticky",
            # a killed worker's partitions move on within seconds
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 3_000,
            # a currency added since (its own new partition) is read within this
            "topic.metadata.refresh.interval.ms": METADATA_REFRESH_MS,
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
            rehearse_close(contexts(currency, 1), datetime.now(UTC))

    @property
    def tracks(self) -> dict[str, CurrencyTrack]:
        return self.fold.tracks

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        mine = {tp.partition for tp in partitions}
        states = load_states(self.bootstrap, self.codec, group=f"{GROUP}-state")
        restored = [track_from_state(s) for s in states.values() if s["source_partition"] in mine]
        committed = consumer.committed(partitions, timeout=COMMITTED_SECONDS_MAX)
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
                self._handle_batch(
                    self.consumer.consume(CONSUME_BATCH_MAX, timeout=CONSUME_WAIT_SECONDS)
                )
        finally:
            self.consumer.close()

    def _handle_batch(self, messages: list[Message]) -> None:
        """One poll through the fold, in log order. A consumer error ends the worker
        before anything of the poll is counted (nothing past the last commit is lost:
        the restarted worker reads the open cycle again)."""
        errors = list(map(Message.error, messages))
        if not set(map(type, errors)) <= {type(None)}:  # by type: KafkaError == None raises
            raise KafkaException(next(e for e in errors if e is not None))
        self._messages = messages
        try:
            self.fold.feed(LogSlice(
                [m.value() or b"" for m in messages],
                [int(m.partition() or 0) for m in messages],
                [int(m.offset() or 0) for m in messages],
                [t[1] for t in map(Message.timestamp, messages)],
            ))  # fmt: skip
        finally:
            self._messages = []

    # The fold's sink.

    def counted(self, currency: str, count: int, duplicates: int, open_count: int) -> None:
        self._obligations_in.inc(count)
        if duplicates:
            self.metrics.duplicates.labels(currency).inc(duplicates)
        gauge = self._open_gauges.get(currency)
        if gauge is None:
            gauge = self._open_gauges[currency] = self.metrics.open_obligations.labels(currency)
        gauge.set(open_count)

    def rejected(self, index: int, reason_code: str, text: str) -> None:
        """Remember a rejection; it is written in the next cycle's transaction."""
        message = self._messages[index]
        self.metrics.rejects.labels("netting", reason_code).inc()
        event = RawEvent(
            OBLIGATIONS_TOPIC, int(message.partition() or 0), int(message.offset() or 0),
            message.key(), message.value() or b"", int(message.timestamp()[1]),
        )  # fmt: skip
        record = rejected_record(event, reason_code, text, stage="netting")
        value = self.codec.encode("Rejected", record, topic=DLQ_TOPIC)
        self._pending_rejects.append((OBLIGATIONS_TOPIC.encode(), value))

    def rejections(self, closing: Closing) -> int:
        self._close_started = time.perf_counter()
        window = rejection_window(closing.track.ledger, closing.log_time)
        count = count_rejections(self.bootstrap, self.codec, window)
        self._rejections_counted = time.perf_counter()
        return count

    def closed(self, closing: Closing, outcome: CycleOutcome) -> None:
        netted = time.perf_counter()
        t0, counted = self._close_started, self._rejections_counted
        _log.info(
            "netting: %s closed: rejections counted in %.0f ms, netted in %.0f ms",
            outcome.report["cycle_id"], 1000 * (counted - t0), 1000 * (netted - counted),
        )  # fmt: skip
        self._emit(outcome, closing.track, closing.partition, closing.offset, t0, netted)
        self.metrics.cycle_closed(outcome.report, time.perf_counter() - t0)
        if self.on_cycle is not None:
            self.on_cycle(outcome)

    def _emit(
        self, outcome: CycleOutcome, track: CurrencyTrack, partition: int, offset: int,
        t0: float, netted: float,
    ) -> None:  # fmt: skip
        """One transaction: batches, positions, report, state, DLQ, offsets; a transaction
        that hangs past twice its timeout ends the process (failure.deadline)."""
        self.statement_topics.ensure(s["participant_id"] for s in outcome.statements)
        with deadline(
            2 * TRANSACTION_SECONDS_MAX, f"the transaction of {outcome.report['cycle_id']}"
        ):
            self._transact(outcome, track, partition, offset, t0, netted)

    def _outcome_records(self, outcome: CycleOutcome) -> list[tuple[str, bytes, bytes]]:
        """The batches, the positions, and each statement on the operator's topic and on
        its participant's own."""
        encode = self.codec.encode
        out = []
        for batch in outcome.batches:
            topic = batch_topic(batch["rail_id"])
            out.append((topic, batch["batch_id"].encode(),
                        encode("SettlementBatch", batch, topic=topic)))  # fmt: skip
        for position in outcome.positions:
            key = f"{position['participant_id']}/{position['currency']}"
            out.append((POSITIONS_TOPIC, key.encode(),
                        encode("Position", position, topic=POSITIONS_TOPIC)))  # fmt: skip
        for statement in outcome.statements:
            participant, cycle_id = statement["participant_id"], statement["cycle_id"]
            own = participant_statement_topic(participant)
            for topic, key in ((STATEMENTS_TOPIC, f"{participant}/{cycle_id}"),
                               (own, f"cycle/{cycle_id}")):  # fmt: skip
                value = self.codec.encode("ParticipantStatement", statement, topic=topic)
                out.append((topic, key.encode(), value))
        return out

    def _version_value(self, digest: str) -> bytes:
        """The whole reference-data version a cycle closed with, for replays to find
        (``clearing.refdata.versions``); written once per version and process."""
        refdata = self.contexts.used[digest]
        version = version_record(self.codec, refdata, self.worker_id, datetime.now(UTC))
        return self.codec.encode("RefdataVersion", version, topic=VERSIONS_TOPIC)

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
            for topic, key, value in self._outcome_records(outcome):
                produce(topic, key=key, value=value)
            for key, value in self._pending_rejects:
                produce(DLQ_TOPIC, key=key, value=value)
            digest = outcome.report["refdata_digest"]
            if digest is not None and digest not in self._versions_recorded:
                produce(VERSIONS_TOPIC, key=digest.encode(), value=self._version_value(digest))
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
        if digest is not None:
            self._versions_recorded.add(digest)
            self.contexts.used.pop(digest, None)  # recorded: the snapshot need not be held
