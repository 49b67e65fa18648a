"""The hand-written ``SeenEvents`` encoding is byte for byte the codec's, and it is
used only for the layout it knows."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearing_core.encoding.avro_rows import _varint
from clearing_core.encoding.avro_write import varint
from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.encoding.schemas import SchemaCatalog
from clearing_core.encoding.seen_codec import SEEN_EVENT_LAYOUT, encode_seen_columns, matches

CODEC = SingleObjectCodec(SchemaCatalog.load())
VERSION = CODEC.catalog.current("SeenEvents")
INT64 = st.integers(-(2**63), 2**63 - 1)
_items = st.tuples(st.text(max_size=20), st.text(max_size=40), INT64, INT64, st.text(max_size=20))


def columns(items: list[tuple[str, str, int, int, str]]) -> list[list[Any]]:
    return [list(column) for column in zip(*items, strict=True)] or [[], [], [], [], []]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30), st.integers(-(2**31), 2**31 - 1), st.lists(_items, max_size=30))
def test_the_encoding_is_the_codecs(
    topic: str, partition: int, items: list[tuple[str, str, int, int, str]]
) -> None:
    names = [name for name, _ in SEEN_EVENT_LAYOUT]
    record = {"source_topic": topic, "source_partition": partition,
              "events": [dict(zip(names, item, strict=True)) for item in items]}  # fmt: skip
    (written,) = encode_seen_columns(VERSION.header, topic, partition, columns(items), 10_000)
    assert written == CODEC.encode("SeenEvents", record)
    assert CODEC.decode(written).record == record


@settings(max_examples=100, deadline=None)
@given(st.lists(_items, max_size=12), st.integers(1, 5))
def test_chunks_are_the_codecs_records_of_each_slice(
    items: list[tuple[str, str, int, int, str]], chunk: int
) -> None:
    names = [name for name, _ in SEEN_EVENT_LAYOUT]
    written = encode_seen_columns(VERSION.header, "t", 3, columns(items), chunk)
    slices = [items[i : i + chunk] for i in range(0, len(items), chunk)] or [[]]
    assert written == [
        CODEC.encode("SeenEvents", {"source_topic": "t", "source_partition": 3,
                                    "events": [dict(zip(names, x, strict=True)) for x in part]})
        for part in slices
    ]  # fmt: skip


def test_a_time_outside_avros_long_is_an_error() -> None:
    with pytest.raises(OverflowError):
        encode_seen_columns(VERSION.header, "t", 0, columns([("e", "d", 2**63, 0, "o")]), 10)


def test_varints_at_their_edges_read_back() -> None:
    """Through the columnar decoder's reader: the two ends agree at every edge."""
    for n in (0, -1, 1, 63, 64, -64, -65, 8191, 8192, 2**31, 2**63 - 1, -(2**63)):
        data = varint(n)
        assert _varint(np.frombuffer(data, np.uint8), 0, len(data)) == (n, len(data))


def test_only_the_known_layout_is_written_by_hand() -> None:
    assert matches(VERSION.expanded)
    changed = copy.deepcopy(dict(VERSION.expanded))
    changed["fields"][2]["type"]["items"]["fields"].append({"name": "extra", "type": "long"})
    assert not matches(changed)
    renamed = copy.deepcopy(dict(VERSION.expanded))
    renamed["fields"][0]["name"] = "topic"
    assert not matches(renamed)
