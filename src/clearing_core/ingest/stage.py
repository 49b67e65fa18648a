"""The ingest stage's work on one micro-batch, as a pure function: its steps in a line.

    fast lane (columns)  ->  decode -> identify -> validate -> price (one by one)  ->  records

The fast lane (``fast_lane/``) takes the plain events and runs the steps over
columns; the events it does not take go through the same steps one at a time
(``decode``, ``identify``, ``validate``, ``price``), which is also the reference the
tests compare the lane with. ``records`` then lays out, in input order, each
event's obligation and de-duplication entry, or its dead letter; the ingest loop
aggregates the obligations of its partitions (``aggregate``) and writes them.

Why pure: the ingest loop is thin (it passes raw records in and writes what
comes out), so every rule here (decode, the topic's record type, duplicate
event ids, validation, exact pricing) is tested without a broker.

Why pricing keeps no state here: each event's exact price ``q x p`` is split
into whole minor units and a remainder in millionths, both carried on the
obligation. The netting stage, which counts every obligation id exactly once
inside Kafka transactions, adds the remainders up per contract and settles
each whole unit they reach. So a re-delivered event yields the identical
obligation, and no crash can count a remainder twice or lose it.
Nothing is dropped silently: every input ends as an obligation or a
``Rejected`` record with a reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from clearing_core.encoding.codec import Codec, SingleObjectCodec
from clearing_core.ingest.batch import NOTHING_TAKEN, RawBatch, RawEvent
from clearing_core.ingest.checks import DEFAULT_LIMITS, ValidationLimits
from clearing_core.ingest.decode import decode_events
from clearing_core.ingest.fast_lane.lane import FastLane
from clearing_core.ingest.identify import identify_events
from clearing_core.ingest.price import price_events
from clearing_core.ingest.records import IngestResult, Seen, records_of
from clearing_core.ingest.validate import validate_events
from clearing_core.refdata import ReferenceData


def process_batch(
    events: Sequence[RawEvent],
    *,
    codec: Codec,
    refdata: ReferenceData,
    expected_type: Mapping[str, str],
    seen: Seen,
    limits: ValidationLimits = DEFAULT_LIMITS,
    keys_must_match: bool = False,
    lane: FastLane | None = None,
    fast: bool = True,
) -> IngestResult:
    """Decode, check, de-duplicate, validate and price a batch, in input order.
    An event without a Kafka key is always refused; ``keys_must_match`` also refuses
    one whose key is not its contract, provider or payer id (DESIGN section 4).
    ``lane`` (kept by a worker for its cache) accepts the plain events in columns;
    every other event takes the per-event path, and both decide alike (``fast=False``
    sends every event the per-event way: the reference the tests compare with)."""
    events = RawBatch.of(events)  # the records as columns, read in bulk by the lane
    lane = (lane if lane is not None else _lane_for(codec)) if fast else None
    taken = NOTHING_TAKEN
    if lane is not None:
        taken = lane.accept(events, refdata, expected_type, limits, keys_must_match)
    left = np.ones(len(events), np.bool_)
    left[taken.rows] = False
    cases = decode_events(events, np.flatnonzero(left).tolist(), codec, refdata, expected_type)
    identify_events(cases, refdata, keys_must_match)
    validate_events(cases, refdata, limits)
    price_events(cases)
    forms = None if lane is None or lane.own_forms else lane.forms.of
    return records_of(events, taken, cases, seen, codec, forms)


def _lane_for(codec: Codec) -> FastLane | None:
    return FastLane(codec) if isinstance(codec, SingleObjectCodec) else None
