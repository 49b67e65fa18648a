"""Every kind of bad input in tests/support/bad_inputs.py, through the ingest
stage's batch function mixed with valid events: each bad one ends as exactly one
``Rejected`` record with its precise reason code and its original bytes, the
valid ones give exactly the obligations they give alone, and every reason code
is explained in docs/rejections.md."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pytest

from clearing_core.encoding import codec as codec_module
from clearing_core.encoding.codec import CodecError, SingleObjectCodec
from clearing_core.encoding.schemas import SchemaCatalog
from clearing_core.ingest.batch import RawEvent
from clearing_core.ingest.checks import Reason
from clearing_core.ingest.envelope import InputReason
from clearing_core.ingest.records import REJECTED_ORIGINAL_MAX, IngestResult
from tests.conftest import REPO
from tests.support import bad_inputs
from tests.support.bad_inputs import BadInput, Corpus, Sent
from tests.support.ingest_paths import ingest_both_ways

NOW_MS = 1_795_000_000_000  # 2026-11-18T09:46:40Z, the log time of every record
REFDATA = bad_inputs.refdata()
CODEC = SingleObjectCodec(SchemaCatalog.load())
CORPUS = bad_inputs.build(CODEC, NOW_MS)
DOCS = REPO / "docs" / "rejections.md"
# Codes the ingest stage writes besides the validator's, the envelope checks' and the codec's.
INGEST_CODES = {"DUPLICATE_EVENT", "DUPLICATE_EVENT_CONFLICT", "AMOUNT_OVERFLOW"}
OTHER_STAGE_CODES = {"UNKNOWN_BATCH", "RAIL_MISMATCH", "UNKNOWN_INSTRUCTION"}  # acks stage


def raw(items: Sequence[Sent | BadInput], first_offset: int = 0) -> list[RawEvent]:
    """The records as the Faust agent hands them over (a tombstone's value reads b"")."""
    sent = [i.sent if isinstance(i, BadInput) else i for i in items]
    return [RawEvent(s.topic, 0, first_offset + n, s.key, s.value or b"", NOW_MS)
            for n, s in enumerate(sent)]  # fmt: skip


def ingest(events: list[RawEvent], seen: dict[str, str] | None = None) -> IngestResult:
    return ingest_both_ways(
        events, codec=CODEC, refdata=REFDATA, expected_type=bad_inputs.EXPECTED_TYPE,
        seen=seen or {}, keys_must_match=True,
    )  # fmt: skip


def codec_reason_codes() -> set[str]:
    errors = [v for v in vars(codec_module).values()
              if isinstance(v, type) and issubclass(v, CodecError)]  # fmt: skip
    return {e.reason_code for e in errors}


def test_the_corpus_has_at_least_30_distinct_kinds() -> None:
    kinds = {case.kind for case in CORPUS.bad}
    assert len(kinds) == len(CORPUS.bad) >= 30
    reasons = {case.reason for case in CORPUS.bad}
    assert len(reasons) >= 30
    # the codec's, the envelope checks' and the ingest stage's codes are all exercised;
    # of the validator's, all but the signature checks (tested with clearing_core.ingest.identify)
    covered = {str(r) for r in InputReason} | codec_reason_codes() | INGEST_CODES
    covered |= {str(r) for r in Reason if "SIGN" not in r.name}
    unreachable = {"AMOUNT_OVERFLOW", "INVALID_RECORD"}  # bounded by reference data; encode only
    assert covered - unreachable - reasons == set()


def test_every_bad_input_is_rejected_and_the_valid_ones_are_unaffected() -> None:
    items = list(CORPUS.interleaved())
    result = ingest(raw(items))
    alone = ingest(raw(list(CORPUS.valid)))
    assert alone.rejections == []
    assert len(alone.obligations) == len(CORPUS.valid)
    assert result.obligations == alone.obligations
    # the same entries, apart from the source offset each record had in its batch
    assert _without_offsets(result.seen_updates) == _without_offsets(alone.seen_updates)
    by_offset = {r["source_offset"]: r for r in result.rejections}
    assert len(by_offset) == len(result.rejections) == len(CORPUS.bad)
    for offset, item in enumerate(items):
        if not isinstance(item, BadInput):
            assert offset not in by_offset, by_offset[offset]
            continue
        rejected = by_offset[offset]
        assert rejected["reason_code"] == item.reason, (item.kind, rejected["message"])
        assert_faithful(rejected, item)


def assert_faithful(rejected: dict[str, Any], case: BadInput) -> None:
    """The DLQ record names its source and holds its bytes, and the worker can send it."""
    value = case.sent.value or b""
    assert rejected["source_topic"] == case.sent.topic
    assert rejected["source_key"] == case.sent.key
    assert rejected["original"] == value[:REJECTED_ORIGINAL_MAX]
    if len(value) > REJECTED_ORIGINAL_MAX:
        assert rejected["message"].startswith(f"key/value cut to {len(case.sent.key or b'')}/")
    message = rejected["message"]
    assert message
    assert "\n" not in message
    assert len(message) <= 500
    assert (
        CODEC.decode(CODEC.encode("Rejected", rejected)).record["original"] == rejected["original"]
    )


@pytest.mark.parametrize("case", CORPUS.bad, ids=[c.kind for c in CORPUS.bad])
def test_each_kind_alone(case: BadInput) -> None:
    """After the anchors (the events the duplicate kinds repeat), one bad input."""
    result = ingest(raw([*CORPUS.anchors, case]))
    assert len(result.obligations) == len(CORPUS.anchors)
    (rejected,) = result.rejections
    assert (rejected["reason_code"], rejected["source_offset"]) == (
        case.reason, len(CORPUS.anchors)
    ), rejected["message"]  # fmt: skip


def test_duplicates_are_found_across_batches() -> None:
    first = ingest(raw(list(CORPUS.anchors)))
    repeats = [c for c in CORPUS.bad if c.reason.startswith("DUPLICATE_EVENT")]
    second = ingest(raw(repeats, first_offset=10_000), seen=first.seen_updates)
    assert [r["reason_code"] for r in second.rejections] == [c.reason for c in repeats]
    assert second.obligations == []


def test_the_same_record_read_again_yields_nothing_and_is_reported() -> None:
    """Records already accepted, read again (same partition and offset: offsets moved
    back by an operator) are no participant's resend, so no dead-letter record; their
    value is on the log already, perhaps inside an aggregate, so no obligation either."""
    events = raw(list(CORPUS.anchors))
    first = ingest(events)
    again = ingest(events, seen=first.seen_updates)
    assert again.rejections == []
    assert again.obligations == []
    assert again.redelivered == events
    assert again.seen_updates == {}


def test_keys_are_compared_only_when_asked() -> None:
    """A missing key is always refused; a key that is not the record's own only with
    ``keys_must_match`` (callers that key every record alike, such as unit tests)."""
    cases = [c for c in CORPUS.bad if c.reason in {"MISSING_KEY", "KEY_MISMATCH"}]
    result = ingest_both_ways(
        raw(cases), codec=CODEC, refdata=REFDATA, expected_type=bad_inputs.EXPECTED_TYPE,
        seen={},
    )  # fmt: skip
    assert sorted(r["reason_code"] for r in result.rejections) == ["MISSING_KEY"] * 2
    assert len(result.obligations) == len(cases) - 2


def test_a_hand_written_payment_matches_the_codec() -> None:
    """The corpus writes some bodies by hand; its writer agrees with the real one."""
    record = bad_inputs.payment(NOW_MS, "p-1")
    assert bad_inputs.raw_payment(CODEC.catalog, record) == CODEC.encode("Payment", record)


def test_every_reason_code_is_documented() -> None:
    documented = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", DOCS.read_text(), flags=re.MULTILINE))
    codes = {str(r) for r in Reason} | {str(r) for r in InputReason} | codec_reason_codes()
    codes |= INGEST_CODES | OTHER_STAGE_CODES | {"WRONG_SCHEMA"}
    assert codes - documented == set()
    assert {c.reason for c in CORPUS.bad} <= documented


def test_build_is_deterministic() -> None:
    again: Corpus = bad_inputs.build(CODEC, NOW_MS)
    assert again == CORPUS


def _without_offsets(seen: dict[str, str]) -> dict[str, str]:
    return {event_id: entry.rsplit("|", 1)[0] for event_id, entry in seen.items()}
