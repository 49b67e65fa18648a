"""Conventions that ruff cannot check, checked on every run (issue 16, item 6).

* Seconds are spelled out: no identifier in src/, services/ or bench/ carries ``_s``,
  ``_sec`` or ``_secs`` as a word of its name (``timeout_s``, ``WAIT_S``,
  ``read_s_max``); ``_seconds`` it is. A rate (``events_per_s``) is not a duration, and
  ``_ms`` is another unit. Names, arguments, attributes, keywords and definitions are
  read with ``ast``, so strings (the benchmarks' JSON keys) and comments do not count.
* No bare timeout numbers in src/ and services/: a number given to a keyword about a
  timeout (``timeout=``, ``broker_session_timeout=``) or to ``.poll(``, ``.flush(``,
  ``.wait(``, ``.join(`` or ``sleep(`` is a named constant with its unit
  (``POLL_SECONDS = 0.5``) or a setting, unless the keyword names the unit itself
  (``idle_timeout_seconds=1.0``). Zero is allowed: "do not wait" has no unit.
* No module over 400 lines and no function over 60 (from its ``def`` line to its last
  line, decorators not counted) in src/, services/ or bench/.

Each check is shown to find an offender in a small example, so a check that silently
stopped matching would fail here too.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SIZED_ROOTS = ("src", "services", "bench")
TIMEOUT_ROOTS = ("src", "services")
MODULE_LINES_MAX = 400
FUNCTION_LINES_MAX = 60

# ``_s``, ``_sec`` or ``_secs`` as a word of the name (at its end or before another
# word), except in a rate (``_per_s``). Matched on the lower-cased name.
SECONDS_ABBREVIATED = re.compile(r"(?<!_per)_(?:s|sec|secs)(?=_|$)")
WAIT_METHODS = frozenset({"poll", "flush", "wait", "join", "sleep"})
UNIT_SUFFIXES = ("_seconds", "_ms")


def python_files(roots: tuple[str, ...]) -> Iterator[Path]:
    for root in roots:
        yield from sorted((REPO / root).rglob("*.py"))


def identifiers(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Every name the code chooses: variables, arguments, attributes, keywords,
    functions, classes and import aliases, with their lines."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            yield node.lineno, node.id
        elif isinstance(node, ast.arg):
            yield node.lineno, node.arg
        elif isinstance(node, ast.Attribute):
            yield node.lineno, node.attr
        elif isinstance(node, ast.keyword) and node.arg is not None:
            yield node.value.lineno, node.arg
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield node.lineno, node.name
        elif isinstance(node, ast.alias) and node.asname is not None:
            yield getattr(node, "lineno", 0), node.asname


def abbreviated_seconds(tree: ast.AST) -> list[str]:
    found = {
        f"{line}: {name}"
        for line, name in identifiers(tree)
        if SECONDS_ABBREVIATED.search(name.lower())
    }
    return sorted(found, key=lambda entry: int(entry.split(":")[0]))


def _number(node: ast.expr) -> bool:
    """A non-zero numeric literal (``-1`` included)."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        node = node.operand
    return isinstance(node, ast.Constant) and type(node.value) in (int, float) and node.value != 0


def _callee(call: ast.Call) -> str:
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return call.func.id if isinstance(call.func, ast.Name) else ""


def bare_timeouts(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _callee(node)
        waits = name == "sleep" or (name in WAIT_METHODS and isinstance(node.func, ast.Attribute))
        if waits and node.args and _number(node.args[0]):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
            continue
        for keyword in node.keywords:
            word = (keyword.arg or "").lower()
            unnamed = "timeout" in word and not word.endswith(UNIT_SUFFIXES)
            if unnamed and _number(keyword.value):
                found.append(f"{node.lineno}: {ast.unparse(node)}")
                break
    return found


def oversized(text: str, tree: ast.AST) -> list[str]:
    """Long modules and functions; a generated module (its docstring says ``do not
    edit``: one TypedDict per schema) grows with the contract, not with its code."""
    found = []
    lines = len(text.splitlines())
    docstring = ast.get_docstring(tree) if isinstance(tree, ast.Module) else None
    generated = docstring is not None and "do not edit" in docstring
    if lines > MODULE_LINES_MAX and not generated:
        found.append(f"module: {lines} lines")
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > FUNCTION_LINES_MAX:
                found.append(f"{node.lineno}: {node.name}: {length} lines")
    return found


def offenders(roots: tuple[str, ...], check: str) -> list[str]:
    found = []
    for path in python_files(roots):
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text, filename=str(path))
        if check == "seconds":
            hits = abbreviated_seconds(tree)
        elif check == "timeouts":
            hits = bare_timeouts(tree)
        else:
            hits = oversized(text, tree)
        found += [f"{path.relative_to(REPO)}:{hit}" for hit in hits]
    return found


def test_seconds_are_spelled_out() -> None:
    found = offenders(SIZED_ROOTS, "seconds")
    assert not found, "write _seconds, not _s/_sec/_secs:\n" + "\n".join(found)


def test_no_bare_timeout_numbers() -> None:
    found = offenders(TIMEOUT_ROOTS, "timeouts")
    assert not found, "name the unit of these waits (a constant or a setting):\n" + "\n".join(found)


def test_modules_and_functions_are_small() -> None:
    found = offenders(SIZED_ROOTS, "sizes")
    assert not found, (
        f"over {MODULE_LINES_MAX} lines a module, {FUNCTION_LINES_MAX} a function:\n"
        + "\n".join(found)
    )


# ---------------------------------------------------------------- the checks themselves


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("timeout_s = 1", ["1: timeout_s"]),
        ("WAIT_S = 1", ["1: WAIT_S"]),
        ("read_s_max = 1", ["1: read_s_max"]),
        ("def f(delay_sec): pass", ["1: delay_sec"]),
        ("obj.poll_secs", ["1: poll_secs"]),
        ("call(every_s=1)", ["1: every_s"]),
        ("def warm_s(): pass", ["1: warm_s"]),
        ("import time as clock_s", ["1: clock_s"]),
        ("timeout_seconds = events_per_s = latency_ms = s = second = 1", []),
        ("x = {'worker_start_s': 1}  # a JSON key, and timeout_s in a comment", []),
    ],
)
def test_the_seconds_check_finds_abbreviations(source: str, expected: list[str]) -> None:
    assert abbreviated_seconds(ast.parse(source)) == expected


@pytest.mark.parametrize(
    ("source", "flagged"),
    [
        ("consumer.poll(0.5)", True),
        ("producer.flush(30)", True),
        ("time.sleep(0.1)", True),
        ("sleep(1)", True),
        ("event.wait(-1)", True),
        ("thread.join(15)", True),
        ("consumer.consume(num_messages=500, timeout=0.5)", True),
        ("admin.list_topics(timeout=10)", True),
        ("App(broker_session_timeout=10.0)", True),
        ("producer.poll(0)", False),
        ("consumer.poll(POLL_SECONDS)", False),
        ("consumer.consume(timeout=settings.poll_seconds)", False),
        ("consume_batches(idle_timeout_seconds=1.0)", False),
        ("AIOKafkaConsumer(request_timeout_ms=5000)", False),
        ("', '.join(names)", False),
        ("wait(5)", False),  # not a method: some other function's argument
    ],
)
def test_the_timeout_check_finds_bare_numbers(source: str, flagged: bool) -> None:
    assert bool(bare_timeouts(ast.parse(source))) is flagged


def test_the_size_check_finds_long_modules_and_functions() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(FUNCTION_LINES_MAX - 1))
    fits = f"def fits():\n{body}\n"
    assert oversized(fits, ast.parse(fits)) == []
    too_long = f"def too_long():\n{body}\n    return 0\n"
    assert oversized(too_long, ast.parse(too_long)) == [
        f"1: too_long: {FUNCTION_LINES_MAX + 1} lines"
    ]
    module = "x = 1\n" * (MODULE_LINES_MAX + 1)
    assert oversized(module, ast.parse(module)) == [f"module: {MODULE_LINES_MAX + 1} lines"]
