"""Load reference data from YAML (or a plain mapping) into a checked snapshot.

Why so careful: the YAML file is edited by hand and is the root of every
obligation the house computes. Parsing is ``safe`` (no object construction),
duplicate keys are errors (plain YAML keeps the last one silently), anchors
may not expand past a node budget, and every problem comes back as one line
that names the section, the record id and the field.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from clearing_core.refdata.checks import RefdataError, iso_ms
from clearing_core.refdata.parse import document_from_data
from clearing_core.refdata.snapshot import ReferenceData

TEXT_BYTES_MAX = 256 * 1024 * 1024
YAML_NODES_MAX = 50_000_000  # counted with anchors expanded
DEFAULT_REFDATA_PATH = Path(__file__).with_name("default.yaml")


def _construct_mapping(
    loader: yaml.constructor.SafeConstructor, node: yaml.MappingNode
) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | bool | float | date | type(None)):
            raise RefdataError([f"line {key_node.start_mark.line + 1}: unhashable mapping key"])
        if key in result:
            raise RefdataError([f"line {key_node.start_mark.line + 1}: duplicate key {key!r}"])
        result[key] = loader.construct_object(value_node, deep=True)
    return result


def _construct_timestamp(loader: yaml.constructor.SafeConstructor, node: yaml.ScalarNode) -> Any:
    """A YAML date or timestamp; one that is not a real date (``2024-13-01``) stays
    text, so the model reports it with its field as it does the quoted text,
    where PyYAML would raise a bare ValueError."""
    try:
        return loader.construct_yaml_timestamp(node)
    except ValueError:
        return loader.construct_scalar(node)


# A safe loader (libyaml's when present: ten times faster) that refuses duplicate keys.
_StrictLoader: Any = type("_StrictLoader", (getattr(yaml, "CSafeLoader", yaml.SafeLoader),), {})
_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)


def _count_nodes(value: Any) -> None:
    """Refuse alias bombs: walk the tree as pydantic will, stopping at the budget."""
    stack = [value]
    count = 0
    while stack:
        item = stack.pop()
        count += 1
        if count > YAML_NODES_MAX:
            raise RefdataError([f"document has more than {YAML_NODES_MAX} nodes"])
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def parse_yaml(text: str) -> Any:
    """YAML text to plain Python data, safely, with one-line errors."""
    if len(text) > TEXT_BYTES_MAX:
        raise RefdataError([f"document is larger than {TEXT_BYTES_MAX} bytes"])
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f"line {mark.line + 1}: " if mark is not None else ""
        raise RefdataError([f"{line}invalid YAML: {exc.problem}"]) from None
    except yaml.YAMLError as exc:
        raise RefdataError([f"invalid YAML: {str(exc).splitlines()[0]}"]) from None
    _count_nodes(data)
    return data


def load_refdata(source: Path | str) -> ReferenceData:
    """Load and check reference data: a ``Path`` is read as a YAML file, a ``str`` is
    YAML text. Raises ``RefdataError`` with one line per problem."""
    if isinstance(source, Path):
        try:
            if source.stat().st_size > TEXT_BYTES_MAX:
                raise RefdataError([f"{source} is larger than {TEXT_BYTES_MAX} bytes"])
            text = source.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RefdataError([f"cannot read {source}: {exc}"]) from None
    else:
        text = source
    data = parse_yaml(text)
    if isinstance(data, str) and "\n" not in text.strip():
        raise RefdataError(["the document is a single string; pass a pathlib.Path to load a file"])
    return parse_refdata(data)


def parse_refdata(data: Any) -> ReferenceData:
    """Check plain data (as parsed from YAML or built by the scenario generator)."""
    return ReferenceData(document_from_data(data))


@functools.cache
def load_default_refdata() -> ReferenceData:
    """The embedded default data set (``default.yaml``), loaded once per process."""
    return load_refdata(DEFAULT_REFDATA_PATH)


FLOW_DICT_KEYS_MAX = 3  # accounts, TOU bands, price entries: one line each
FLOW_LIST_ITEMS_MAX = 8  # roles, a contract's few meters; longer lists one item a line


class _Dumper(yaml.SafeDumper):
    """Block style, small scalar leaves on one line, timestamps as ``...T00:00:00Z``."""


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, dict | list | tuple)


def _represent_dict(dumper: yaml.SafeDumper, value: dict[Any, Any]) -> yaml.MappingNode:
    flow = len(value) <= FLOW_DICT_KEYS_MAX and all(_is_scalar(v) for v in value.values())
    return dumper.represent_mapping("tag:yaml.org,2002:map", value.items(), flow_style=flow)


def _represent_list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.SequenceNode:
    flow = len(value) <= FLOW_LIST_ITEMS_MAX and all(_is_scalar(v) for v in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)


def _represent_datetime(dumper: yaml.SafeDumper, value: datetime) -> yaml.ScalarNode:
    ms = (value - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    return dumper.represent_scalar("tag:yaml.org,2002:timestamp", iso_ms(ms))


_Dumper.add_representer(dict, _represent_dict)
_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(datetime, _represent_datetime)


def dump_refdata_yaml(data: Mapping[str, Any], header: str = "") -> str:
    """Deterministic YAML text of a reference-data mapping (dict order kept)."""
    body = yaml.dump(
        dict(data),
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
    )
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    return "\n".join([*lines, body]) if lines else body
