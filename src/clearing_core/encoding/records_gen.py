"""Writes ``records.py``: one TypedDict per named Avro record of the contract.

Why generated: the records that cross the core are plain dicts (what fastavro reads
and writes and the column writers take), and ``dict[str, Any]`` let a misspelt field
name through to run time. TypedDicts give mypy the field names and types at no run
time cost; generating them from the schemas (the current reader versions of the
catalog) keeps the two from drifting, and tests/core/encoding/test_records.py fails
when they have. Run ``make records`` (``python -m clearing_core.encoding.records_gen``)
after changing a schema; ``--check`` exits 1 when the file is out of date.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clearing_core.encoding.schemas import SchemaCatalog, SchemaCatalogError

OUTPUT = Path(__file__).with_name("records.py")
LINE_MAX = 100
PRIMITIVES = {"string": "str", "bytes": "bytes", "int": "int", "long": "int", "float": "float",
              "double": "float", "boolean": "bool", "null": "None"}  # fmt: skip
# Logical types as the codec (fastavro) decodes them; an unknown one is an error, not a guess.
LOGICAL = {"timestamp-millis": "datetime", "timestamp-micros": "datetime", "date": "date"}
HEADER = '''\
"""The Avro records of the contract as TypedDicts, so that mypy checks field names and types.

Generated from schemas/*.avsc (the current versions in clearing_core.encoding.schemas's
catalog) by ``python -m clearing_core.encoding.records_gen`` (``make records``): do not edit.
tests/core/encoding/test_records.py fails when this file and the schemas differ.

Records stay plain dicts, as fastavro and the column writers take them: a TypedDict costs
nothing at run time. A field with a default in its schema is NotRequired (a writer may
leave it out and the codec writes the default; a decoded record has every field). Enums
are Literal types; timestamp-millis is an aware datetime (UTC), date a date. What a type
and its fields mean is in its schema: schemas/clearing.<type>.avsc, or for a nested type
the file of the type that defines it.
"""
'''


@dataclass
class _Module:
    """What the walk of the schemas found: definitions in dependency order."""

    blocks: dict[str, str] = field(default_factory=dict)  # full name -> source
    imports: set[str] = field(default_factory=set)
    typing: set[str] = field(default_factory=set)
    named: dict[str, Mapping[str, Any]] = field(default_factory=dict)  # full name -> schema


def _full_name(name: str, namespace: str) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _short(full_name: str) -> str:
    return full_name.rsplit(".", 1)[-1]


def _type(schema: Any, namespace: str, module: _Module) -> str:
    """The Python annotation of an Avro type; named types are defined on the way."""
    if isinstance(schema, list):
        branches = [_type(branch, namespace, module) for branch in schema]
        return " | ".join(sorted(branches, key=lambda branch: branch == "None"))  # None last
    if isinstance(schema, str):
        if schema in PRIMITIVES:
            return PRIMITIVES[schema]
        full = _full_name(schema, namespace)
        if full not in module.named:
            raise SchemaCatalogError(f"{schema}: a named type used before its definition")
        return _short(full)
    logical = schema.get("logicalType")
    if logical is not None:
        if logical not in LOGICAL:
            raise SchemaCatalogError(f"logical type {logical}: no Python type known for it")
        module.imports.add(LOGICAL[logical])
        return LOGICAL[logical]
    kind = schema["type"]
    if kind in ("record", "enum"):
        return _define(schema, namespace, module)
    if kind == "array":
        return f"list[{_type(schema['items'], namespace, module)}]"
    if kind == "map":
        return f"dict[str, {_type(schema['values'], namespace, module)}]"
    if kind == "fixed":
        raise SchemaCatalogError(f"{schema.get('name')}: fixed types are not generated")
    return _type(kind, namespace, module)


def _define(schema: Mapping[str, Any], namespace: str, module: _Module) -> str:
    """Define a named record or enum once (its nested types first); its name."""
    full = _full_name(schema["name"], schema.get("namespace", namespace))
    known = module.named.get(full)
    if known is not None:
        if dict(known) != dict(schema):
            raise SchemaCatalogError(f"{full}: two different definitions")
        return _short(full)
    if any(_short(name) == _short(full) for name in module.named):
        raise SchemaCatalogError(f"{full}: short name taken by another namespace")
    module.named[full] = schema
    if schema["type"] == "enum":
        module.blocks[full] = _enum(_short(full), schema["symbols"], module)
    else:
        module.blocks[full] = _record(full, schema, module)
    return _short(full)


def _enum(name: str, symbols: Iterable[str], module: _Module) -> str:
    module.typing.update({"Literal", "TypeAlias"})
    quoted = [f'"{symbol}"' for symbol in symbols]
    line = f"{name}: TypeAlias = Literal[{', '.join(quoted)}]"
    if len(line) <= LINE_MAX:
        return line
    return "\n".join([f"{name}: TypeAlias = Literal[", *(f"    {q}," for q in quoted), "]"])


def _record(full: str, schema: Mapping[str, Any], module: _Module) -> str:
    module.typing.add("TypedDict")
    namespace = full.rsplit(".", 1)[0] if "." in full else ""
    lines = []
    for item in schema["fields"]:
        annotation = _type(item["type"], namespace, module)
        if "default" in item:
            module.typing.add("NotRequired")
            annotation = f"NotRequired[{annotation}]"
        lines.append(f"    {item['name']}: {annotation}")
    return "\n".join([f"class {_short(full)}(TypedDict):", *lines])


def generate(catalog: SchemaCatalog) -> str:
    """The source of ``records.py`` for the current versions of ``catalog``."""
    module = _Module()
    for version in catalog:
        _define(version.expanded, "", module)
    imports = []
    if module.imports:
        imports.append(f"from datetime import {', '.join(sorted(module.imports))}")
    imports.append(f"from typing import {', '.join(sorted(module.typing))}")
    enums = [b for b in module.blocks.values() if not b.startswith("class ")]
    classes = [b for b in module.blocks.values() if b.startswith("class ")]
    head = "\n\n".join([HEADER.rstrip("\n"), "\n".join(imports), "\n".join(enums)])
    parts = [head, *classes]
    return "\n\n\n".join(part.rstrip("\n") for part in parts if part) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write records.py from the Avro schemas.")
    parser.add_argument("--check", action="store_true", help="exit 1 if records.py is stale")
    parser.add_argument("--schemas", type=Path, default=None, help="schema directory")
    args = parser.parse_args(argv)
    source = generate(SchemaCatalog.load(args.schemas))
    if args.check:
        stale = not OUTPUT.exists() or OUTPUT.read_text() != source
        if stale:
            print(f"{OUTPUT} is out of date: run make records", file=sys.stderr)
        return int(stale)
    OUTPUT.write_text(source)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
