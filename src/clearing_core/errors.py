"""The error every layer raises for bad input or a broken invariant.

Why one base class: the CLI turns any ``ClearingError`` into a single line on
stderr and a non-zero exit, and the streaming stages turn it into a
dead-letter record with ``reason_code``; anything else is a bug and is allowed
to surface as one.
"""

from __future__ import annotations

from typing import ClassVar


class ClearingError(Exception):
    """Bad input, bad configuration or a broken invariant, said in one line."""

    reason_code: ClassVar[str] = "ERROR"
    exit_code: ClassVar[int] = 2


class InputError(ClearingError):
    """A file, record or argument that cannot be accepted."""

    reason_code = "BAD_INPUT"


class InvariantError(ClearingError):
    """A computed result broke a conservation or consistency invariant: a bug or
    corrupted input; nothing derived from it may be emitted."""

    reason_code = "INVARIANT_BROKEN"
    exit_code = 3
