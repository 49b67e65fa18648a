"""Validation of ISO 20022 documents against the official XSDs (``schemas/iso20022/``).

Why the XSD as well as pyiso20022's strict parse: the bindings check structure and
types, the XSD also every facet (patterns, lengths, digits) a bank's gateway
checks; a document that fails it is never written, and the error names the
element. Each schema is loaded once per process.

Why two validators: libxml2 (lxml) decides, about thirty times faster than
xmlschema on a bank's file of thousands of transactions; only a document it
refuses is validated again by xmlschema, whose first error names the element by
its path (``/Document/FIToFIPmtStsRpt/...``) rather than by a line number.
Untrusted XML is parsed without entities, DTDs or network access.
"""

from __future__ import annotations

from functools import cache
from itertools import islice
from pathlib import Path

import xmlschema
from lxml import etree

from clearing_core.encoding.schemas import default_schema_dir
from clearing_core.exports.documents import ExportError

MESSAGES = ("pacs.009.001.08", "pacs.002.001.10", "camt.054.001.08", "camt.053.001.08")
ERRORS_SHOWN = 1  # the first problem, with where it is: one line


def schema_dir() -> Path:
    return default_schema_dir() / "iso20022"


def _path(message: str) -> Path:
    if message not in MESSAGES:
        raise ExportError(f"no schema for {message!r} (known: {', '.join(MESSAGES)})")
    return schema_dir() / f"{message}.xsd"


@cache
def schema(message: str) -> xmlschema.XMLSchema:
    """The official XSD of ``message`` (e.g. ``pacs.009.001.08``), loaded once."""
    return xmlschema.XMLSchema(str(_path(message)))


@cache
def _fast_schema(message: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(_path(message))))


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           huge_tree=False)  # fmt: skip


def validate(data: bytes, message: str) -> None:
    """Raise ``ExportError`` naming the element of the first XSD violation of ``data``."""
    fast = _fast_schema(message)
    try:
        if fast.validate(etree.fromstring(data, _parser())):
            return
        fallback = str(fast.error_log.last_error)
    except etree.XMLSyntaxError as exc:
        raise ExportError(f"{message} invalid at the document: {exc}") from None
    except etree.XMLSchemaValidateError as exc:  # e.g. an entity it refused to resolve
        fallback = str(exc)
    try:
        errors = list(islice(schema(message).iter_errors(data), ERRORS_SHOWN))
    except xmlschema.XMLResourceError as exc:  # past xmlschema's limits
        first = str(exc).splitlines()[0]
        raise ExportError(f"{message} invalid at the document: {first}") from None
    for error in errors:
        where = error.path or "the document"
        reason = (error.reason or str(error)).splitlines()[0]
        raise ExportError(f"{message} invalid at {where}: {reason}")
    raise ExportError(f"{message} invalid: {fallback.splitlines()[0]}")
