"""Plain data (from YAML, a generator or decoded Avro records) to a checked document.

Why a module of its own: the YAML loader and ``ReferenceData.from_records``
must give the same one-line errors, so pydantic's nested error locations are
translated here, once, into paths that name records by id
(``participants[DC-SHENZHEN-01].accounts[CNH].rail_id``) instead of by index.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from clearing_core.refdata.checks import PROBLEMS_MAX, RefdataError
from clearing_core.refdata.document import RefdataDocument

# The field that names a list item in error paths; other lists use the index.
_ITEM_KEY_BY_FIELD = {
    "currencies": "code", "rails": "rail_id", "participants": "participant_id",
    "contracts": "contract_id", "price_books": "price_book_id", "payment_kinds": "kind",
    "accounts": "currency", "entries": "sku",
}  # fmt: skip


def document_from_data(data: Any) -> RefdataDocument:
    """Validate ``data`` record by record (``ReferenceData`` then checks across
    records); raise ``RefdataError`` with one line per problem."""
    if not isinstance(data, Mapping):
        raise RefdataError([f"the document must be a mapping, got {type(data).__name__}"])
    try:
        document = RefdataDocument.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise RefdataError([_describe(data, e) for e in errors[:PROBLEMS_MAX]]) from None
    return document


def _describe(data: Mapping[str, Any], error: ErrorDetails) -> str:
    """One pydantic error as ``section[id].field: message (got value)``."""
    path = ""
    node: Any = data
    parent_field = ""
    for step in error["loc"]:
        if isinstance(step, int) and isinstance(node, list | tuple) and 0 <= step < len(node):
            node = node[step]
            path += f"[{_item_name(node, parent_field, step)}]"
        elif isinstance(step, str) and isinstance(node, Mapping) and step in node:
            node = node[step]
            path += f".{step}" if path else step
            parent_field = step
        elif isinstance(step, str) and error["type"] in {"missing", "extra_forbidden"}:
            path += f".{step}" if path else step
    message = error["msg"].removeprefix("Value error, ")
    # YAML has lists, not tuples; "after validation" is pydantic's business.
    message = message.replace("Tuple", "List").replace("valid tuple", "valid list")
    message = message.replace(" after validation", "")
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    elif error["type"] == "missing":
        message = "required field is missing"
    elif _is_scalar(value := error.get("input")) and not (
        isinstance(value, str) and repr(value)[:40] in message  # already quoted
    ):
        message += f" (got {_short(value)})"
    return f"{path or 'document'}: {message}"


def _item_name(item: Any, field: str, index: int) -> str:
    key = _ITEM_KEY_BY_FIELD.get(field)
    if key is not None and isinstance(item, Mapping):
        value = item.get(key)
        if isinstance(value, str) and value and len(value) <= 64 and "\n" not in value:
            return value
    return str(index)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool | date) or value is None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
