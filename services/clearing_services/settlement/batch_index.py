"""Recent settlement batches by id, and the state of each of their instructions, for
the acknowledgements agent.

Why a follower rather than a table: batch topics have one partition per rail and
acknowledgements are keyed by batch id on another topic, so nothing is
co-partitioned; every acks worker simply tails every rail's batches (the most
recent ones) into a bounded map, and ``clearing.settlement.status`` (the state of
each instruction, written by whichever acks worker applied an acknowledgement) into
the same entries, so a batch and its states are forgotten together.

A record either topic holds that this version cannot read stops the worker with a
message naming it: leaving it out would forget a batch (its acknowledgements would
be dead-lettered) or a final state (a contradicting acknowledgement would be
applied).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from clearing_core.cycle.acks import FINAL_STATES, AckBatch
from clearing_core.encoding.codec import Codec, CodecError
from clearing_core.encoding.records import InstructionState, InstructionStatus, SettlementBatch
from clearing_core.errors import ClearingError
from clearing_services.kafka.clients import consumer_config, log_ends
from clearing_services.kafka.settling import watermarks
from clearing_services.kafka.topics import STATUS_TOPIC, batch_topic
from clearing_services.kafka.waits import CONSUME_WAIT_SECONDS, METADATA_TIMEOUT_SECONDS

BATCHES_KEPT = 20_000
INSTRUCTIONS_KEPT = 1_000_000  # about 250 MB at most, whatever the batches' sizes
RECENT_PER_RAIL = 5_000
EARLY_STATES_KEPT = 100_000  # states read before their batch (another rail's lag)
SYNC_SECONDS_MAX = 90.0  # > the broker's abort of a transaction left open (60 s + 10 s)


class UnreadableRecordError(ClearingError):
    """A batch or instruction state this version cannot read."""

    exit_code = 70


class AckView(AckBatch):
    """A batch as the index keeps it: what acknowledgements need, when it was made
    (for the overdue report), and the state of each instruction acknowledged
    (instruction id -> state)."""

    created_ms: int
    states: dict[str, InstructionState]


def ack_view(batch: SettlementBatch) -> AckView:
    """What an acknowledgement needs of a batch (``acks.apply_ack``): its id, rail and
    currency, per instruction its id, parties and amount, and the instructions'
    states (filled as they are read). Keeping whole decoded batches made an acks
    worker grow by about 3 MB a minute with 30-second cycles (docs/performance-history.md)."""
    return {
        "batch_id": batch["batch_id"], "rail_id": batch["rail_id"],
        "currency": batch["currency"],
        "instructions": [
            {"instruction_id": i["instruction_id"], "payer_id": i["payer_id"],
             "payee_id": i["payee_id"], "amount_minor": i["amount_minor"]}
            for i in batch["instructions"]
        ],
        "created_ms": int(batch["created_at"].timestamp() * 1000), "states": {},
    }  # fmt: skip


class BatchIndex:
    """A bounded map batch id -> what acks need of a ``SettlementBatch`` (``ack_view``),
    filled by ``run``; the oldest go first past ``BATCHES_KEPT`` batches or
    ``INSTRUCTIONS_KEPT`` instructions."""

    def __init__(self, bootstrap: str, codec: Codec, rails: Callable[[], Iterable[str]]) -> None:
        self.bootstrap = bootstrap
        self.codec = codec
        self.rails = rails
        self._batches: OrderedDict[str, AckView] = OrderedDict()
        self._early: OrderedDict[str, dict[str, InstructionState]] = OrderedDict()  # id -> states
        self._instructions = 0  # held over all batches
        self._status_read: dict[int, int] = {}  # partition -> next offset read
        self._oldest_ms: int | None = None  # log time of the oldest batch read
        self._following = threading.Event()  # set once states are followed too
        self._lock = threading.Lock()
        self.changed = threading.Condition(self._lock)

    def get(self, batch_id: str, wait_seconds: float = 0.0) -> AckView | None:
        """The batch, waiting up to ``wait_s`` for the follower to catch up."""
        with self.changed:
            self.changed.wait_for(lambda: batch_id in self._batches, timeout=wait_seconds)
            return self._batches.get(batch_id)

    def state_of(self, batch_id: str, instruction_id: str) -> InstructionState | None:
        """The instruction's state as last read or recorded (None: no acknowledgement)."""
        with self._lock:
            batch = self._batches.get(batch_id)
            return None if batch is None else batch["states"].get(instruction_id)

    def overdue(self, now_ms: int, timeouts: Mapping[str, int]) -> dict[str, int]:
        """Per rail, the instructions of the batches held still without a final state
        past the rail's ack timeout (seconds): what the operator must chase."""
        late: dict[str, int] = {}
        with self._lock:
            for batch in self._batches.values():
                timeout = timeouts.get(batch["rail_id"])
                if timeout is None or now_ms - batch["created_ms"] <= 1000 * timeout:
                    continue
                states = batch["states"]
                waiting = sum(states.get(i["instruction_id"]) not in FINAL_STATES
                              for i in batch["instructions"])  # fmt: skip
                late[batch["rail_id"]] = late.get(batch["rail_id"], 0) + waiting
        return late

    def record(self, states: Iterable[InstructionStatus]) -> None:
        """States this worker has just committed (its own writes, before they are read)."""
        with self.changed:
            for state in states:
                self._set_state(state["batch_id"], state["instruction_id"], state["status"])

    def sync(self, timeout_seconds: float = SYNC_SECONDS_MAX) -> None:
        """Wait until every state committed before now has been read: an acknowledgement
        whose instruction another worker owned until a rebalance sees its final state."""
        deadline = time.monotonic() + timeout_seconds
        if not self._following.wait(timeout_seconds):
            raise ClearingError(f"{STATUS_TOPIC} not followed after {timeout_seconds:.0f} s")
        ends = log_ends(self.bootstrap, STATUS_TOPIC, self._status_partitions())
        wanted = {p: high for p, (_, high) in ends.items()}
        with self.changed:
            done = self.changed.wait_for(
                lambda: all(self._status_read.get(p, 0) >= h for p, h in wanted.items()),
                timeout=max(0.0, deadline - time.monotonic()),
            )
        if not done:
            raise ClearingError(f"{STATUS_TOPIC} not read to its end in {timeout_seconds:.0f} s")

    def _status_partitions(self) -> list[int]:
        with self._lock:
            return sorted(self._status_read)

    def run(self, stop: threading.Event) -> None:
        consumer = Consumer(consumer_config(self.bootstrap, "clearing-batch-index"))
        try:
            rails = sorted(set(self.rails()))
            consumer.assign(self._batch_assignment(consumer, rails))
            self._catch_up(consumer)
            consumer.incremental_assign(self._status_assignment(consumer))
            self._following.set()
            while not stop.is_set():
                if sorted(set(self.rails())) != rails:  # reference data added a rail
                    added = sorted(set(self.rails()) - set(rails))
                    rails = sorted(set(self.rails()))
                    consumer.incremental_assign(self._batch_assignment(consumer, added))
                self._take(consumer.consume(1000, timeout=CONSUME_WAIT_SECONDS))
                self._note_positions(consumer)
        finally:
            consumer.close()

    def _batch_assignment(self, consumer: Consumer, rails: Iterable[str]) -> list[TopicPartition]:
        out = []
        for rail in rails:
            topic = batch_topic(rail)
            low, high = watermarks(consumer, TopicPartition(topic, 0))
            out.append(TopicPartition(topic, 0, max(low, high - RECENT_PER_RAIL)))
        return out

    def _catch_up(self, consumer: Consumer) -> None:
        """Read the recent batches to their ends before any state: states are written
        after their batch, so none older than the oldest batch kept is needed."""
        ends = {(tp.topic, tp.partition): watermarks(consumer, tp)[1]
                for tp in consumer.assignment()}  # fmt: skip
        deadline = time.monotonic() + SYNC_SECONDS_MAX
        while any(consumer.position([TopicPartition(t, p)])[0].offset < end
                  for (t, p), end in ends.items() if end > 0):  # fmt: skip
            if time.monotonic() > deadline:
                raise ClearingError(f"the batch topics were not read in {SYNC_SECONDS_MAX:.0f} s")
            self._take(consumer.consume(1000, timeout=CONSUME_WAIT_SECONDS))

    def _status_assignment(self, consumer: Consumer) -> list[TopicPartition]:
        topics = consumer.list_topics(STATUS_TOPIC, timeout=METADATA_TIMEOUT_SECONDS).topics
        metadata = topics[STATUS_TOPIC]
        since = int(time.time() * 1000) if self._oldest_ms is None else self._oldest_ms
        wanted = [TopicPartition(STATUS_TOPIC, p, since) for p in sorted(metadata.partitions)]
        starts = consumer.offsets_for_times(wanted, timeout=METADATA_TIMEOUT_SECONDS)
        out = []
        for tp in starts:
            low, high = watermarks(consumer, tp)
            start = tp.offset if tp.offset >= 0 else high  # -1: nothing as recent as that
            out.append(TopicPartition(STATUS_TOPIC, tp.partition, max(low, start)))
            with self._lock:
                self._status_read[tp.partition] = max(low, start)
        return out

    def _note_positions(self, consumer: Consumer) -> None:
        partitions = [TopicPartition(STATUS_TOPIC, p) for p in self._status_partitions()]
        if not partitions:
            return
        positions = consumer.position(partitions)
        with self.changed:
            for tp in positions:
                if tp.offset >= 0:
                    self._status_read[tp.partition] = tp.offset
            self.changed.notify_all()

    def _take(self, messages: list[Message]) -> None:
        batches: list[AckView] = []
        states: list[InstructionStatus] = []
        for message in messages:
            if message.error() is not None:
                raise KafkaException(message.error())
            where = f"{message.topic()}@{message.partition()}:{message.offset()}"
            try:
                found = self.codec.decode(message.value() or b"")
            except CodecError as exc:
                raise UnreadableRecordError(f"{where}: unreadable ({exc}); a worker of a "
                                            "newer version must read it") from exc  # fmt: skip
            if found.name == "SettlementBatch":
                batches.append(ack_view(found.as_record(SettlementBatch)))
                log_ms = message.timestamp()[1]
                self._oldest_ms = min(self._oldest_ms or log_ms, log_ms)
            elif found.name == "InstructionStatus":
                states.append(found.as_record(InstructionStatus))
            else:
                raise UnreadableRecordError(f"{where}: a {found.name} record, not a batch or state")
        if batches or states:
            with self.changed:
                self._add_batches(batches)
                for state in states:
                    self._set_state(state["batch_id"], state["instruction_id"], state["status"])
                self.changed.notify_all()

    def _add_batches(self, batches: list[AckView]) -> None:
        for batch in batches:
            previous = self._batches.pop(batch["batch_id"], None)
            if previous is not None:
                self._instructions -= len(previous["instructions"])
                batch["states"] = previous["states"]
            batch["states"].update(self._early.pop(batch["batch_id"], {}))
            self._batches[batch["batch_id"]] = batch
            self._instructions += len(batch["instructions"])
        while len(self._batches) > BATCHES_KEPT or (
            self._instructions > INSTRUCTIONS_KEPT and len(self._batches) > 1
        ):
            _, oldest = self._batches.popitem(last=False)
            self._instructions -= len(oldest["instructions"])

    def _set_state(self, batch_id: str, instruction_id: str, status: InstructionState) -> None:
        batch = self._batches.get(batch_id)
        if batch is not None:
            batch["states"][instruction_id] = status
            return
        self._early.setdefault(batch_id, {})[instruction_id] = status
        while len(self._early) > EARLY_STATES_KEPT:
            self._early.popitem(last=False)
