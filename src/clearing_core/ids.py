"""Deterministic identifiers: everything the clearing house emits is named from the
log, never from the clock or a random source, so a replay reproduces it byte for byte."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Iterable

from clearing_core.errors import InputError

END_TO_END_ID_CHARS_MAX = 35  # ISO 20022 Max35Text
SOURCE_PREFIX = {"METER": "m", "COMPUTE": "c", "PAYMENT": "p", "FAILED_SETTLEMENT": "f"}


def source_digest(event_ids: Iterable[str]) -> str:
    """Hex SHA-256 over the sorted, newline-joined event ids (order-free, auditable)."""
    joined = "\n".join(sorted(event_ids)).encode()
    return hashlib.sha256(joined).hexdigest()


def obligation_id(source: str, event_ids: Iterable[str]) -> str:
    """``m:<event id>`` for one event; ``m:agg:<digest>`` for a pre-aggregate."""
    if source not in SOURCE_PREFIX:
        raise InputError(f"unknown obligation source {source!r}")
    ids = sorted(event_ids)
    if not ids:
        raise InputError("an obligation needs at least one source event")
    if len(ids) == 1:
        return event_obligation_id(source, ids[0])
    return aggregate_id(source, source_digest(ids))


def event_obligation_id(source: str, event_id: str) -> str:
    """``m:<event id>``: ``obligation_id`` of one event, without the list (one per event)."""
    return f"{SOURCE_PREFIX[source]}:{event_id}"


def aggregate_id(source: str, digest: str) -> str:
    """``m:agg:<digest>`` of a pre-aggregate, from its ``source_digest``."""
    return f"{SOURCE_PREFIX[source]}:agg:{digest[:32]}"


def cycle_id(currency: str, cycle_seq: int) -> str:
    assert cycle_seq >= 1
    return f"{currency}-{cycle_seq:08d}"


def batch_id(rail_id: str, currency: str, cycle_seq: int) -> str:
    """One batch per rail per currency cycle."""
    return f"{rail_id}-{cycle_id(currency, cycle_seq)}"


def instruction_id(batch: str, sequence: int) -> str:
    assert sequence >= 1
    return f"{batch}-{sequence:06d}"


def uetr(instruction: str) -> str:
    """A UUID in the version-4 form that ISO 20022 and SWIFT gpi require, derived from
    the instruction id (so it is stable across replays) rather than drawn at random."""
    digest = bytearray(hashlib.sha256(instruction.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x40  # version 4
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    return str(uuid.UUID(bytes=bytes(digest)))


def end_to_end_id(instruction: str) -> str:
    """The instruction id when it fits ISO 20022's 35 characters, else a stable hash."""
    if len(instruction) <= END_TO_END_ID_CHARS_MAX:
        return instruction
    digest = hashlib.sha256(instruction.encode()).digest()
    return "E2E" + base64.b32encode(digest).decode()[:32]
