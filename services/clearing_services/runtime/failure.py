"""How a worker fails: loudly, at once, and without committing.

Every part of a worker (Faust agents, the netting loop, the followers) ends the
whole process on an error it cannot handle, with exit status 70, so that its
supervisor starts a fresh one; nothing after the last committed input counts.
A call that may never return gets a deadline that does the same.

Each such end is also appended to the worker's failure journal (a JSON line in
the state folder, ``failures/<worker id>.jsonl``): the process is gone before a
scrape could see a counter, so the next start reads the journal and exports the
count by kind (``clearing_worker_failures_total``), which is what the invariant
alert fires on.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import os
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

from clearing_core.errors import InvariantError

EXIT_FATAL = 70
STDERR_FD = 2
FAILURE_KINDS = ("invariant", "stall", "error")
JOURNAL_LINE_MAX = 2_000  # characters of one journal line
_log = logging.getLogger("clearing.failure")
_journal: list[Path] = []  # where this process records its end (set once at start)


def keep_journal(path: Path) -> Counter[str]:
    """Record this process's fatal ends in ``path`` from now on; the ends recorded
    there before, counted by kind (an unreadable line counts as an error)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _journal[:] = [path]
    counts: Counter[str] = Counter(dict.fromkeys(FAILURE_KINDS, 0))
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            try:
                kind = str(json.loads(line)["kind"])
            except (ValueError, KeyError, TypeError):
                kind = "error"
            counts[kind if kind in FAILURE_KINDS else "error"] += 1
    return counts


def _kind(exc: BaseException, stacks: bool) -> str:
    if isinstance(exc, InvariantError):
        return "invariant"
    return "stall" if stacks else "error"


def _record(what: str, exc: BaseException, stacks: bool) -> None:
    if not _journal:
        return
    entry = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "kind": _kind(exc, stacks),
             "what": what, "error": repr(exc)}  # fmt: skip
    line = json.dumps(entry)[:JOURNAL_LINE_MAX]
    with suppress(Exception), _journal[0].open("a") as out:  # nothing may stop the exit
        out.write(line + "\n")


def fatal(what: str, exc: BaseException, stacks: bool = False) -> None:
    """Log and end the process now: nothing after the last acknowledged input is committed.
    ``stacks``: also write every thread's stack to stderr, for a process that ends
    because something hangs (where it hung is the clue the exception lacks)."""
    _log.critical("%s failed, exiting without committing: %r", what, exc, exc_info=exc)
    _record(what, exc, stacks)
    logging.shutdown()
    if stacks:  # to file descriptor 2: Faust swaps sys.stderr for a logger with no fileno
        with suppress(Exception):  # nothing may stop the exit
            faulthandler.dump_traceback(file=STDERR_FD, all_threads=True)
    os._exit(EXIT_FATAL)


@contextmanager
def deadline(seconds: float, what: str) -> Iterator[None]:
    """End the process if the block has not finished after ``seconds``.

    For calls whose own timeout cannot be trusted: librdkafka's
    ``send_offsets_to_transaction`` can block for ever while the group coordinator
    is away (librdkafka issues #5456 and #5511), seen here after a broker restart.
    The open transaction is then never committed, so a restart loses nothing."""
    assert seconds > 0
    timer = threading.Timer(
        seconds, fatal, (what, TimeoutError(f"no return in {seconds:.0f} s"), True)
    )
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
