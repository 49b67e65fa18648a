"""The ingest stage's fast lane: the steps of the per-event path, in columns, for the
plain events of a batch.

Why: the per-event path (decode to a dict, then one rule after another in
Python) costs about 30 µs an event; the raw consumer reads one in 3 µs. Most
events are plain: the current writer schema, printable ASCII ids, no signature
headers, parties and contracts that exist and may trade. For those the lane runs
the same steps over columns: ``decode`` (the columnar decoder), ``identify``
(their keys, in a kernel), ``validate`` (the rules on the strings, once per
profile) and ``price`` (the rules per row and the exact price, in kernels).

The lane only ever accepts. A row it is not sure about, for any reason, goes
to the per-event path, which decides it exactly as before; so the rejection
reasons and messages are unchanged, and the differential tests compare both
paths on the bad-input corpus and on random batches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from clearing_core.encoding.avro_rows import RowPlan, plan_of
from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.ingest.batch import NOTHING_TAKEN, LaneResult, RawBatch, RawEvent
from clearing_core.ingest.checks import ValidationLimits
from clearing_core.ingest.fast_lane.decode import decode_columns
from clearing_core.ingest.fast_lane.forms import LaneForms
from clearing_core.ingest.fast_lane.identify import check_keys
from clearing_core.ingest.fast_lane.price import price_rows
from clearing_core.ingest.fast_lane.validate import PROFILE_FIELDS, Profiles
from clearing_core.refdata import ReferenceData


class FastLane:
    """Row plans of the event types, and the profiles checked per reference data."""

    def __init__(self, codec: SingleObjectCodec) -> None:
        self.codec = codec
        self.plans: dict[str, RowPlan] = {}
        for name, fields in PROFILE_FIELDS.items():
            plan = plan_of(codec, name)
            if plan is not None and plan.fields[: len(fields) + 1] == ("event_id", *fields):
                self.plans[name] = plan
        # the canonical forms (``clearing_core.encoding.canonical``) of the rows it accepts: where
        # ``own_forms`` (every event of the current schemas today) the rows themselves
        self.forms = LaneForms(codec, self.plans)
        self.own_forms = self.forms.own
        self.profiles = Profiles()

    def accept(
        self, events: Sequence[RawEvent], refdata: ReferenceData,
        expected_type: Mapping[str, str], limits: ValidationLimits, keys_must_match: bool,
    ) -> LaneResult:  # fmt: skip
        """The events the fast lane accepted; the per-event path decides the others."""
        if refdata.policy.require_signed_events:
            return NOTHING_TAKEN
        batch = RawBatch.of(events)
        parts = []
        for name, rows in self._chosen(batch, expected_type).items():
            picked = batch.take(rows)
            columns = decode_columns(name, self.plans[name], picked, self.codec.record_bytes_max)
            check_keys(columns, picked, keys_must_match)
            profiled = self.profiles.of(columns, refdata)
            found = price_rows(columns, picked, profiled, limits)
            parts.append(replace(found, rows=np.array(rows, np.int64)[found.rows]))
        return parts[0] if len(parts) == 1 else LaneResult.concat(parts)

    def _chosen(self, events: RawBatch, expected_type: Mapping[str, str]) -> dict[str, list[int]]:
        """The rows of each event type the lane reads: those without headers (unsigned:
        nothing for identify to verify) on a topic of a type it has a plan for (a batch
        of one topic: no loop per event)."""
        topics = set(events.topics)
        if len(topics) == 1 and (events.headers is None or not any(events.headers)):
            name = expected_type.get(topics.pop())
            return {name: list(range(len(events)))} if name in self.plans else {}
        chosen: dict[str, list[int]] = {}
        for i, event in enumerate(events):
            name = expected_type.get(event.topic)
            if name in self.plans and not event.headers:
                chosen.setdefault(name, []).append(i)
        return chosen
