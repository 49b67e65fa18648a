"""How a worker fails: loudly, at once, and without committing.

Every part of a worker (Faust agents, the netting loop, the followers) ends the
whole process on an error it cannot handle, with exit status 70, so that its
supervisor starts a fresh one; nothing after the last committed input counts.
A call that may never return gets a deadline that does the same.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

EXIT_FATAL = 70
STDERR_FD = 2
_log = logging.getLogger("clearing.failure")


def fatal(what: str, exc: BaseException, stacks: bool = False) -> None:
    """Log and end the process now: nothing after the last acknowledged input is committed.
    ``stacks``: also write every thread's stack to stderr, for a process that ends
    because something hangs (where it hung is the clue the exception lacks)."""
    _log.critical("%s failed, exiting without committing: %r", what, exc, exc_info=exc)
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
