"""Ground truth for a chaos run, computed from the generated events alone, and the
settlement the pipeline actually produced, read back from the batch topics.

The truth never looks at the log: every valid event is priced once by the pure
core, and each carry key settles ``floor(sum of exact prices)`` in whole minor
units (the netting stage carries the sub-minor rest, docs/pricing.md). Settled
positions come from the instructions of every batch on every rail; the two must
be equal for every participant and currency.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from clearing_core.encoding.codec import Codec
from clearing_core.ingest.batch import RawEvent
from clearing_core.ingest.checks import DEFAULT_LIMITS
from clearing_core.ingest.stage import process_batch
from clearing_core.refdata import ReferenceData
from clearing_core.workload.generator import GeneratedEvent
from clearing_services.kafka.clients import read_topic
from clearing_services.kafka.topics import EVENT_TOPICS, batch_topic, event_topic

PRICE_SCALE = 1_000_000
CLEARING_HOUSE = "CLEARING_HOUSE"
Positions = dict[tuple[str, str], int]


@dataclass
class Truth:
    """What the pipeline must settle for the events sent so far."""

    valid_ids: set[str] = field(default_factory=set)
    whole_minor: Positions = field(default_factory=lambda: defaultdict(int))
    carry: dict[str, list[Any]] = field(default_factory=dict)  # key -> [debtor, creditor, ccy, ppm]

    def add(self, events: Sequence[GeneratedEvent], codec: Codec, refdata: ReferenceData) -> None:
        """Price the valid events of one slice (each event id once)."""
        fresh = [
            e for e in events if e.expect is None and e.record["event_id"] not in self.valid_ids
        ]
        raw = [_raw(e, codec, i) for i, e in enumerate(fresh)]
        expected = {spec.topic: spec.record_type for spec in EVENT_TOPICS}
        result = process_batch(
            raw, codec=codec, refdata=refdata, expected_type=expected, seen={},
            limits=DEFAULT_LIMITS,
        )  # fmt: skip
        assert not result.rejections, f"generator's valid events rejected: {result.rejections[:2]}"
        for _, record in result.obligations:
            self._count(record)
        self.valid_ids.update(e.record["event_id"] for e in fresh)

    def _count(self, record: Mapping[str, Any]) -> None:
        debtor, creditor = str(record["debtor_id"]), str(record["creditor_id"])
        currency, amount = str(record["currency"]), int(record["amount_minor"])
        self.whole_minor[(debtor, currency)] -= amount
        self.whole_minor[(creditor, currency)] += amount
        if record.get("carry_key"):
            entry = self.carry.setdefault(str(record["carry_key"]), [debtor, creditor, currency, 0])
            assert entry[:3] == [debtor, creditor, currency], "a carry key changed its parties"
            entry[3] += int(record["remainder_ppm"])

    def positions(self) -> Positions:
        """Net position per (participant, currency): whole amounts plus every whole minor
        unit the carried remainders have reached."""
        out: Positions = defaultdict(int, self.whole_minor)
        for debtor, creditor, currency, ppm in self.carry.values():
            whole = ppm // PRICE_SCALE
            out[(debtor, currency)] -= whole
            out[(creditor, currency)] += whole
        return {k: v for k, v in out.items() if v != 0}


def _raw(event: GeneratedEvent, codec: Codec, offset: int) -> RawEvent:
    spec = event_topic(event.kind)
    value = codec.encode(spec.record_type, event.record)
    key = str(event.record[spec.key_field]).encode()
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    return RawEvent(spec.topic, 0, offset, key, value, now_ms)


def settled_positions(bootstrap: str, codec: Codec, rails: Iterable[str]) -> Positions:
    """Net settled per (participant, currency) over every batch of every rail."""
    out: Positions = defaultdict(int)
    for rail in sorted(rails):
        for record in read_topic(bootstrap, batch_topic(rail), f"chaos-read-{rail}"):
            batch = codec.decode(record.value).record
            for line in batch["instructions"]:
                amount, currency = int(line["amount_minor"]), str(batch["currency"])
                if line["payer_id"] != CLEARING_HOUSE:
                    out[(str(line["payer_id"]), currency)] -= amount
                if line["payee_id"] != CLEARING_HOUSE:
                    out[(str(line["payee_id"]), currency)] += amount
    return {k: v for k, v in out.items() if v != 0}


def receivable_minor(positions: Positions) -> int:
    """Sum of the positive positions: what the participants must receive in total."""
    return sum(v for v in positions.values() if v > 0)
