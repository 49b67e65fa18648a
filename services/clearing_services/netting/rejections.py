"""How many rejections of a currency a cycle saw, for its report.

The DLQ is read from the start of the cycle's window (``offsets_for_times``) to its
end as it stands at close, and the records the window covers are counted (which ones
do: ``clearing_core.cycle.rejections``). A rejection still on its way to the DLQ
when the marker is read counts in no cycle: the report says what the clearing house
knew at close.
"""

from __future__ import annotations

from confluent_kafka import Consumer, TopicPartition

from clearing_core.cycle.rejections import RejectionWindow
from clearing_core.encoding.codec import Codec, CodecError
from clearing_core.encoding.records import Rejected
from clearing_core.errors import ClearingError
from clearing_services.kafka.clients import Record, consume_batches, consumer_config
from clearing_services.kafka.settling import topic_partitions, watermarks
from clearing_services.kafka.topics import DLQ_TOPIC
from clearing_services.kafka.waits import METADATA_TIMEOUT_SECONDS


def count_rejections(bootstrap: str, codec: Codec, window: RejectionWindow) -> int:
    """The dead letters on the DLQ now that ``window`` covers."""
    consumer = Consumer(consumer_config(bootstrap, "clearing-rejection-count"))
    try:
        partitions = topic_partitions(consumer, DLQ_TOPIC)
        if not partitions:
            return 0
        wanted = [TopicPartition(DLQ_TOPIC, p, int(window.since.timestamp() * 1000))
                  for p in partitions]  # fmt: skip
        starts = consumer.offsets_for_times(wanted, timeout=METADATA_TIMEOUT_SECONDS)
        ends = {tp.partition: watermarks(consumer, tp)[1] for tp in wanted}
        todo = [tp for tp in starts if 0 <= tp.offset < ends[tp.partition]]
        if not todo:
            return 0
        consumer.assign(todo)
        count = 0
        open_ends = {tp.partition: ends[tp.partition] for tp in todo}
        for batch in consume_batches(consumer, idle_timeout_seconds=1.0):
            for record in batch:
                if record.offset >= open_ends.get(record.partition, 0):
                    continue
                if window.covers(_rejected(codec, record)):
                    count += 1
            positions = consumer.position([TopicPartition(DLQ_TOPIC, p) for p in open_ends])
            for tp in positions:
                if tp.offset >= open_ends[tp.partition]:
                    del open_ends[tp.partition]
            if not open_ends:
                break
        return count
    finally:
        consumer.close()


class UnreadableRejectionError(ClearingError):
    """A dead letter this version cannot read: its currency, and so the cycle report's
    rejection count, is unknown."""


def _rejected(codec: Codec, record: Record) -> Rejected:
    try:
        decoded = codec.decode(record.value)
    except CodecError as exc:
        raise UnreadableRejectionError(
            f"{DLQ_TOPIC}@{record.partition}:{record.offset}: unreadable ({exc}); a cycle "
            "cannot count its rejections: run a worker of the version that wrote it"
        ) from exc
    if decoded.name != "Rejected":
        raise UnreadableRejectionError(
            f"{DLQ_TOPIC}@{record.partition}:{record.offset}: a {decoded.name} record"
        )
    return decoded.as_record(Rejected)
