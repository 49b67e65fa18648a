"""Run ``process_batch`` both ways and insist they agree.

Why: the fast lane (columns, Numba) and the per-event path must decide every
event alike, so every test that feeds the ingest core a batch also checks the
fast lane against the reference path, event for event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from clearing_core.ingest.batch import RawEvent
from clearing_core.ingest.records import IngestResult
from clearing_core.ingest.stage import process_batch


def ingest_both_ways(events: Sequence[RawEvent], **kwargs: Any) -> IngestResult:
    """The fast result, after checking it equals the per-event path's in full."""
    seen: Mapping[str, str] = kwargs.pop("seen", {})
    fast = process_batch(events, seen=dict(seen), **kwargs)
    slow = process_batch(events, seen=dict(seen), fast=False, **kwargs)
    assert fast.priced == slow.priced
    assert fast.rejections == slow.rejections
    assert fast.redelivered == slow.redelivered
    assert fast.seen_updates == slow.seen_updates
    assert list(fast.seen_updates) == list(slow.seen_updates)  # the same order
    assert fast.seen_items == slow.seen_items
    assert [item[0] for item in fast.seen_items] == list(fast.seen_updates)
    return fast
