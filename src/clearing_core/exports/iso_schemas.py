"""Validation of ISO 20022 documents against the official XSDs (``schemas/iso20022/``).

Why the XSD as well as pyiso20022's strict parse: the bindings check structure and
types, the XSD also every facet (patterns, lengths, digits) a bank's gateway
checks; a document that fails it is never written, and the error names the
element. Each schema is loaded once per process (a few hundred milliseconds).
"""

from __future__ import annotations

from functools import cache
from itertools import islice
from pathlib import Path

import xmlschema

from clearing_core.encoding.schemas import default_schema_dir
from clearing_core.exports.documents import ExportError

MESSAGES = ("pacs.009.001.08", "pacs.002.001.10", "camt.054.001.08", "camt.053.001.08")
ERRORS_SHOWN = 1  # the first problem, with where it is: one line


def schema_dir() -> Path:
    return default_schema_dir() / "iso20022"


@cache
def schema(message: str) -> xmlschema.XMLSchema:
    """The official XSD of ``message`` (e.g. ``pacs.009.001.08``), loaded once."""
    if message not in MESSAGES:
        raise ExportError(f"no schema for {message!r} (known: {', '.join(MESSAGES)})")
    return xmlschema.XMLSchema(str(schema_dir() / f"{message}.xsd"))


def validate(data: bytes, message: str) -> None:
    """Raise ``ExportError`` naming the element of the first XSD violation of ``data``."""
    try:
        errors = list(islice(schema(message).iter_errors(data), ERRORS_SHOWN))
    except xmlschema.XMLResourceError as exc:  # not XML at all (or past xmlschema's limits)
        first = str(exc).splitlines()[0]
        raise ExportError(f"{message} invalid at the document: {first}") from None
    for error in errors:
        where = error.path or "the document"
        reason = (error.reason or str(error)).splitlines()[0]
        raise ExportError(f"{message} invalid at {where}: {reason}")
