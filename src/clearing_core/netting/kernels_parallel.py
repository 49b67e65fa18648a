"""The parallel path of the net-position pass: one contiguous chunk per thread.

``_net_positions_parallel`` runs the serial hot loop of ``kernels`` on each
chunk and merges the chunks in input order, with exactly the serial kernel's
results, errors and partial sums included; ``_net_positions`` picks the path.
Private like ``kernels``: the public functions in ``positions`` validate first.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import cast

import numba
import numpy as np
from numba import prange
from numba.np.ufunc import parallel as numba_parallel

from clearing_core.jit import I64, IntArray, Mask, kernel, parallel_kernel
from clearing_core.netting.kernels import (
    OK,
    U64,
    _accumulate,
    _net_positions_checked,
    _net_positions_serial,
    _status_of,
)

# The parallel path: one contiguous chunk per thread, each of at least
# PARALLEL_CHUNK_MIN obligations (below that the gain is a fraction of a
# millisecond and a thread that is not scheduled at once costs more); the
# per-thread tables together hold at most as many cells as there are
# obligations (zeroing and merging a cell costs a small fraction of one
# obligation's scatter) and at most PARALLEL_TABLE_BYTES_MAX. Anything else
# runs the serial kernel.
PARALLEL_CHUNK_MIN = 1 << 18
PARALLEL_TABLE_BYTES_MAX = 64 << 20
# Padding (in 8-byte cells) between the per-thread tables: a thread's gross
# is written for every obligation, and two threads writing one cache line
# make the parallel pass slower than the serial one (false sharing).
_PAD = 8


_threading_layer = cast(Callable[[], str], numba_parallel.threading_layer)


# GNU OpenMP (numba's "omp" threading layer) spins at the end of each parallel
# region; under load that makes the parallel kernel slower than the serial one.
# The process entry points set OMP_WAIT_POLICY=PASSIVE for that reason
# (clearing_services.settings.tune_process_environment): a library must not
# change its process's environment.


@kernel
def _first_stopped(stops: I64) -> int:
    """The first chunk that stopped at a bad obligation, else the last chunk: the
    chunks up to it are merged."""
    for t in range(stops.shape[0]):
        if stops[t] >= 0:
            return t
    return int(stops.shape[0]) - 1


@kernel
def _merged_gross(
    grosses: U64, overflows: Mask, last: int, n_currencies: int, g_stride: int
) -> tuple[U64, bool | np.bool_]:
    """The grosses of chunks 0..``last`` summed per currency, and whether some sum
    or a chunk's own running gross passed int64 (``_accumulate``'s sticky bit)."""
    gross = np.zeros(n_currencies, np.uint64)
    sticky = np.uint64(0)
    for t in range(last + 1):
        if overflows[t]:
            sticky |= np.uint64(1) << np.uint64(63)
        for c in range(n_currencies):
            g = gross[c] + grosses[t * g_stride + c]
            sticky |= g
            gross[c] = g
    return gross, (sticky >> np.uint64(63)) != 0


@parallel_kernel
def _net_positions_parallel(
    debtor: IntArray,
    creditor: IntArray,
    currency: IntArray,
    amount: I64,
    n_participants: int,
    n_currencies: int,
    n_chunks: int,
) -> tuple[I64, I64, int, int]:
    """``_net_positions_serial`` on ``n_chunks`` contiguous chunks in parallel,
    with the same results (errors and partial sums included).

    Each chunk runs the serial hot loop into its own padded table and gross.
    Then, in input order: the chunks up to the first that stopped at a bad
    obligation are merged; their grosses are summed with the same sticky-bit
    test, so an overflow anywhere before the first bad obligation is seen
    exactly (the global running gross is at least each chunk's and at most
    the merged total). An overflow hands over to the serial checked pass,
    which names the obligation. Without one, every merged cell is bounded
    by the merged gross, so the position merge is exact.
    """
    m = amount.shape[0]
    size = n_participants * n_currencies
    stride = size + _PAD
    g_stride = n_currencies + _PAD
    tables = np.zeros(n_chunks * stride, np.int64)
    grosses = np.zeros(n_chunks * g_stride, np.uint64)
    stops = np.empty(n_chunks, np.int64)
    overflows = np.empty(n_chunks, np.bool_)
    for t in prange(n_chunks):
        lo = m * t // n_chunks
        hi = m * (t + 1) // n_chunks
        stop, overflowed = _accumulate(
            debtor[lo:hi],
            creditor[lo:hi],
            currency[lo:hi],
            amount[lo:hi],
            n_participants,
            n_currencies,
            tables[t * stride : t * stride + size],
            grosses[t * g_stride : t * g_stride + n_currencies],
        )
        stops[t] = stop if stop < 0 else lo + stop
        overflows[t] = overflowed
    last = _first_stopped(stops)
    gross, any_overflow = _merged_gross(grosses, overflows, last, n_currencies, g_stride)
    if any_overflow:
        return _net_positions_checked(
            debtor, creditor, currency, amount, n_participants, n_currencies
        )
    position = tables[:size].copy()
    for t in range(1, last + 1):
        position += tables[t * stride : t * stride + size]
    first_bad = stops[last]
    if first_bad < 0:
        return position, gross.view(np.int64), OK, -1
    status = _status_of(debtor, creditor, currency, amount, first_bad, n_participants, n_currencies)
    return position, gross.view(np.int64), status, int(first_bad)


class _Parallel:
    """Process-wide state of the parallel path.

    ``lock``: one parallel launch at a time; a concurrent caller runs the
    serial kernel instead of waiting (the ``workqueue`` threading layer
    aborts the process on concurrent launches, and two launches on two cores
    gain nothing). ``usable``: False in a child forked after this process
    launched threads with the ``omp`` layer, where GNU OpenMP would abort.
    """

    lock = threading.Lock()
    usable = True


def _after_fork_in_child() -> None:
    _Parallel.lock = threading.Lock()
    try:
        layer = _threading_layer()
    except ValueError:  # no parallel launch yet: any layer is still safe
        return
    if layer == "omp":
        _Parallel.usable = False


os.register_at_fork(after_in_child=_after_fork_in_child)


def warm_up_parallel() -> None:
    """Run the parallel kernel once on two obligations. Only batches of at least
    2 x PARALLEL_CHUNK_MIN obligations take it, so without this the first such cycle
    of a process paid for loading it and starting the threads, or, on an empty cache,
    for compiling it: 2.4-2.5 s for a 1M-obligation cycle in the end-to-end bench."""
    if not _Parallel.usable or not _Parallel.lock.acquire(blocking=False):
        return
    try:
        two = np.array([0, 1], np.int32)
        _net_positions_parallel(two, two[::-1].copy(), np.zeros(2, np.int32),
                                np.array([5, 7], np.int64), 2, 1, 2)  # fmt: skip
    finally:
        _Parallel.lock.release()


def parallel_chunks(n_obligations: int, n_participants: int, n_currencies: int) -> int:
    """How many chunks ``_net_positions`` splits a batch into (1: serial)."""
    if not _Parallel.usable:
        return 1
    chunks = min(numba.get_num_threads(), n_obligations // PARALLEL_CHUNK_MIN)
    cells = chunks * (n_participants * n_currencies + _PAD)
    if chunks < 2 or cells > n_obligations or cells * 8 > PARALLEL_TABLE_BYTES_MAX:
        return 1
    return int(chunks)


def _net_positions(
    debtor: IntArray,
    creditor: IntArray,
    currency: IntArray,
    amount: I64,
    n_participants: int,
    n_currencies: int,
) -> tuple[I64, I64, int, int]:
    """Net position per (participant, currency), flat, gross per currency,
    status and index, as ``_net_positions_serial`` defines them; large
    batches run in parallel, with identical results."""
    chunks = parallel_chunks(amount.shape[0], n_participants, n_currencies)
    if chunks > 1 and _Parallel.lock.acquire(blocking=False):
        try:
            return _net_positions_parallel(
                debtor, creditor, currency, amount, n_participants, n_currencies, chunks
            )
        finally:
            _Parallel.lock.release()
    return _net_positions_serial(debtor, creditor, currency, amount, n_participants, n_currencies)
