"""Whole versions of the reference data as one record each, so that no version a
cycle was closed with is ever lost.

Why: the ``clearing.refdata.*`` topics are compacted, so they hold only the latest
value of each key; a cap tightened today would make yesterday's cycles re-net
differently. A ``RefdataVersion`` record carries every record of one version under
its digest, on a topic compacted by digest: compaction only ever drops a second copy
of the same version. ``clearing replay`` re-nets each cycle with the version its
report names.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from clearing_core.encoding.codec import Codec, CodecError
from clearing_core.encoding.records import RefdataVersion
from clearing_core.refdata.checks import RefdataError
from clearing_core.refdata.document import POLICY_KEY, SECTIONS, RefdataPolicy
from clearing_core.refdata.snapshot import ReferenceData

VERSIONS_TOPIC = "clearing.refdata.versions"


def version_record(codec: Codec, refdata: ReferenceData, by: str, at: datetime) -> RefdataVersion:
    """The ``RefdataVersion`` record of ``refdata``."""
    records = [codec.encode(r.record_type, r.value, topic=r.topic) for r in refdata.to_records()]
    return {"digest": refdata.digest, "recorded_by": by, "recorded_at": at, "records": records}


def refdata_of_version(codec: Codec, record: RefdataVersion) -> ReferenceData:
    """The reference data a ``RefdataVersion`` record carries, checked against its digest.
    An unreadable or inconsistent version is a ``RefdataError`` naming the digest."""
    digest = str(record["digest"])
    rows: list[tuple[str, str, Any]] = []
    try:
        for value in record["records"]:
            decoded = codec.decode(value)
            rows.append((f"clearing.{decoded.name}", _key_of(decoded.name, decoded.record),
                         decoded.record))  # fmt: skip
        refdata = ReferenceData.from_records(rows, version=f"digest {digest[:16]}")
    except (CodecError, RefdataError, KeyError) as exc:
        raise RefdataError([f"reference data version {digest[:16]}: {exc}"]) from exc
    if refdata.digest != digest:
        raise RefdataError(
            [f"reference data version {digest[:16]}: its records have digest {refdata.digest[:16]}"]
        )
    return refdata


# record type -> the field its compacted topic is keyed by
_ID_FIELDS = {model.AVRO_NAME: id_field for model, id_field in SECTIONS.values()}


def _key_of(name: str, record: dict[str, Any]) -> str:
    full_name = f"clearing.{name}"
    if full_name == RefdataPolicy.AVRO_NAME:
        return POLICY_KEY
    return str(record[_ID_FIELDS[full_name]])
