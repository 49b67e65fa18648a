"""The same event sent again with a newer writer schema is the same event (issue 15,
item 6): the ingest stage's digest is of the record's canonical form
(``clearing_core.encoding.canonical``), not of the bytes that came, and it stays what it was
for events of the current schemas, so the seen state of a restart still matches."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.encoding.schemas import SchemaCatalog, schema_json, version_from_schema
from clearing_core.ingest.batch import RawEvent
from clearing_core.ingest.fast_lane.lane import FastLane
from clearing_core.ingest.records import SEEN_SEPARATOR, IngestResult, seen_entry
from tests.core.encoding.test_schema_evolution import (
    ADDED,
    NAMES,
    V1_ONLY,
    V1_READER,
    V2_READER,
    V2_VERSIONS,
)
from tests.core.ingest.test_ingest_core import NOW_MS, REFDATA, TOPICS, meter
from tests.support.avro_strategies import records
from tests.support.ingest_paths import ingest_both_ways

TOPIC = "clearing.events.meter"
READERS = {"v1 reader told of v2": V1_READER, "v2 reader told of v1": V2_READER}


def v1(energy_wh: int = 1_000_000, event_id: str = "e1") -> bytes:
    return V1_ONLY.encode("MeterReading", meter(event_id, energy_wh))


def v2(energy_wh: int = 1_000_000, grid_node: str | None = None, event_id: str = "e1") -> bytes:
    record = {**meter(event_id, energy_wh), "grid_node": grid_node}
    return V2_READER.encode("MeterReading", record)


def ingest(
    codec: SingleObjectCodec, sent: list[tuple[int, bytes]], seen: dict[str, str] | None = None
) -> IngestResult:
    """``sent``: (offset, value) on partition 0 of the meter topic; both paths agree."""
    events = [RawEvent(TOPIC, 0, offset, b"PPA-CN-0001", value, NOW_MS) for offset, value in sent]
    return ingest_both_ways(events, codec=codec, refdata=REFDATA, expected_type=TOPICS,
                            seen=seen or {})  # fmt: skip


def sha(value: bytes) -> str:
    """A digest as the ingest stage stores it: 32 hex digits of SHA-256."""
    return hashlib.sha256(value).hexdigest()[:32]


def codes(result: IngestResult) -> list[str]:
    return [r["reason_code"] for r in result.rejections]


def digest_of(result: IngestResult, event_id: str = "e1") -> str:
    return result.seen_updates[event_id].split(SEEN_SEPARATOR)[0]


@pytest.mark.parametrize("codec", READERS.values(), ids=READERS)
def test_a_v2_resend_without_the_added_field_is_a_duplicate_of_the_v1_event(
    codec: SingleObjectCodec,
) -> None:
    assert v2()[2:10] != v1()[2:10]  # another writer: other bytes
    first = ingest(codec, [(1, v1())])
    assert [p.event_id for p in first.priced] == ["e1"]
    later = ingest(codec, [(2, v2())], seen=first.seen_updates)  # across the seen state
    assert (later.priced, codes(later)) == ([], ["DUPLICATE_EVENT"])
    for pair in ([(1, v1()), (2, v2())], [(1, v2()), (2, v1())]):  # in one batch, either way
        both = ingest(codec, pair)
        assert (len(both.priced), codes(both)) == (1, ["DUPLICATE_EVENT"])


@pytest.mark.parametrize("codec", READERS.values(), ids=READERS)
def test_other_content_under_the_same_id_is_still_a_conflict(codec: SingleObjectCodec) -> None:
    first = ingest(codec, [(1, v1())])
    for other in (v2(energy_wh=1_000_001), v2(grid_node="QH-330kV-07"), v1(energy_wh=7)):
        later = ingest(codec, [(2, other)], seen=first.seen_updates)
        assert (later.priced, codes(later)) == ([], ["DUPLICATE_EVENT_CONFLICT"])
        assert later.rejections[0]["message"] == "e1: event id reused with different content"


def test_current_schema_digests_are_of_their_bytes_as_before() -> None:
    """What a worker restores from its seen state was written as the first 32 hex
    digits of the SHA-256 of the record's bytes: for the current schemas it still is,
    under either reader, so a restart across this change finds its events the same."""
    expected = sha(v1())
    assert FastLane(V1_READER).own_forms
    assert not FastLane(V2_READER).own_forms  # its v2 rows may have the v1 form
    for codec in READERS.values():
        assert digest_of(ingest(codec, [(1, v1())])) == expected
        assert digest_of(ingest(codec, [(1, v2())])) == expected  # a v2 with no grid node
    with_node = v2(grid_node="QH-330kV-07")
    assert digest_of(ingest(V2_READER, [(1, with_node)])) == sha(with_node)


def test_entries_written_before_canonical_digests_still_match_their_events() -> None:
    """A v2 event accepted before this change has the digest of its own bytes in the
    seen state: read again at its offset it is a redelivery, resent it is a duplicate."""
    old = {"e1": seen_entry(sha(v2()), 0, 0, 5)}
    assert ingest(V1_READER, [(5, v2())], seen=old).redelivered
    resent = ingest(V1_READER, [(6, v2())], seen=old)
    assert (resent.priced, codes(resent)) == ([], ["DUPLICATE_EVENT"])


def test_a_writer_whose_added_field_has_no_default_is_its_own_form() -> None:
    """Only a field a record may leave out (optional, null by default) makes an older
    version hold it: a v2 whose grid node has no default is another schema."""
    schema = json.loads(schema_json(V2_VERSIONS["MeterReading"]))
    del schema["fields"][-1]["default"]
    strict = version_from_schema(schema)
    codec = SingleObjectCodec(SchemaCatalog.load().with_writers([strict]))
    written = strict.header + V2_READER.encode("MeterReading", {**meter("e1", 5)})[10:]
    assert codec.decode(written).record == meter("e1", 5)
    assert codec.canonical(written) == written


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_v2_record_without_its_added_fields_has_the_v1_form(
    name: str, data: st.DataObject
) -> None:
    """Under either reader: a v2 record whose added fields are null is, in canonical
    form, byte for byte the v1 record; a v1 record is its own form; a v2 record that
    sets an added field is its own form too (it says more than the v1 record)."""
    record: dict[str, Any] = data.draw(records(V1_ONLY.catalog.current(name).parsed))
    old = V1_ONLY.encode(name, record)
    absent = V2_READER.encode(name, {**record, **dict.fromkeys(ADDED[name])})
    present = V2_READER.encode(name, {**record, **ADDED[name]})
    for codec in READERS.values():
        assert codec.canonical(old) == old
        assert codec.canonical(absent) == old
        assert codec.canonical(present) == present


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_lane_makes_the_forms_the_codec_makes(data: st.DataObject) -> None:
    """The fast lane's forms by column (``fast_lane.forms``, for a v2 reader that knows v1)
    are the codec's, for mixed v2 events whose added fields are null or set, also with
    the last byte 0 (an added field's null) written as a longer varint (valid Avro,
    not the shortest form; a set field ends in its text, not in a branch)."""
    lane = FastLane(V2_READER)
    values = []
    for name in lane.plans:
        for record in data.draw(st.lists(records(V2_VERSIONS[name].parsed), max_size=4)):
            value = V2_READER.encode(name, record)
            values.append(value)
            if all(record.get(field) is None for field in ADDED[name]):  # ends in a null
                values.append(value[:-1] + b"\x80\x00")
    assert lane.forms.of(values) == list(map(V2_READER.canonical, values))
