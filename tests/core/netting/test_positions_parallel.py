"""The parallel net-position kernel against the serial reference kernel.

Both must give identical results: positions, gross, status and index, on
good input, on bad input and on overflow, for any number of chunks. The
index is always the first problem in input order (``reference.first_problem``).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clearing_core.netting import ObligationInputError, net_positions
from clearing_core.netting import kernels as k
from clearing_core.netting import kernels_parallel as kp
from clearing_services.settings import tune_process_environment
from tests.core.netting import reference as ref
from tests.core.netting.conftest import NETTING_SETTINGS

INT64_MAX = 2**63 - 1
CODES = {
    k.BAD_DEBTOR: "debtor",
    k.BAD_CREDITOR: "creditor",
    k.BAD_CURRENCY: "currency",
    k.BAD_AMOUNT: "amount",
    k.SELF_OBLIGATION: "self",
    k.OVERFLOW: "overflow",
}
Result = tuple[np.ndarray, np.ndarray, int, int]
Batch = tuple[int, int, list[ref.Row]]


@st.composite
def messy_batches(draw: st.DrawFn) -> Batch:
    """Mostly valid obligations, now and then one bad field; amounts either
    small or so large that a few of them overflow a currency's gross."""
    n_participants = draw(st.integers(2, 6))
    n_currencies = draw(st.integers(1, 3))
    if draw(st.booleans()):
        amounts = st.integers(INT64_MAX // 8, INT64_MAX)
    else:
        amounts = st.integers(1, 10**6)
    rows = []
    for _ in range(draw(st.integers(0, 40))):
        debtor = draw(st.integers(0, n_participants - 1))
        creditor = draw(st.integers(0, n_participants - 2))
        creditor += creditor >= debtor
        row = [debtor, creditor, draw(st.integers(0, n_currencies - 1)), draw(amounts)]
        if draw(st.integers(0, 15)) == 0:
            field = draw(st.integers(0, 4))
            if field == 0:
                row[0] = draw(st.sampled_from([-1, -(2**31), n_participants, 2**31 - 1]))
            elif field == 1:
                row[1] = draw(st.sampled_from([-1, n_participants]))
            elif field == 2:
                row[2] = draw(st.sampled_from([-1, n_currencies]))
            elif field == 3:
                row[3] = draw(st.sampled_from([0, -1, -INT64_MAX - 1]))
            else:
                row[1] = row[0]
        rows.append((row[0], row[1], row[2], row[3]))
    return n_participants, n_currencies, rows


def columns(rows: list[ref.Row]) -> tuple[np.ndarray, ...]:
    """int32 indices (as the public functions pass them), so out-of-range
    values reach the kernel instead of being caught by the conversion."""
    array = np.array(rows, dtype=np.int64).reshape(-1, 4)
    return (
        array[:, 0].astype(np.int32),
        array[:, 1].astype(np.int32),
        array[:, 2].astype(np.int32),
        array[:, 3].copy(),
    )


def assert_identical(first: Result, second: Result) -> None:
    assert (int(first[2]), int(first[3])) == (int(second[2]), int(second[3]))
    assert first[0].dtype == second[0].dtype == np.int64
    assert first[1].dtype == second[1].dtype == np.int64
    assert np.array_equal(first[0], second[0])
    assert np.array_equal(first[1], second[1])


def assert_matches_reference(result: Result, batch: Batch) -> None:
    """Status and index name the first problem; position and gross are the
    sums of the obligations before it (of all of them if there is none)."""
    n_participants, n_currencies, rows = batch
    expected = ref.first_problem(rows, n_participants, n_currencies)
    position, gross, status, index = result
    if expected is None:
        assert (status, index) == (k.OK, -1)
        done = rows
    else:
        assert (index, CODES[status]) == expected
        done = rows[:index]
    flat = position.reshape(n_participants, n_currencies)
    got = {(int(p), int(c)): int(flat[p, c]) for p, c in zip(*np.nonzero(flat), strict=True)}
    assert got == ref.positions(done)
    assert {c: int(g) for c, g in enumerate(gross) if g} == ref.gross(done)


@NETTING_SETTINGS
@given(messy_batches(), st.integers(1, 7))
def test_parallel_kernel_equals_serial_kernel(batch: Batch, chunks: int) -> None:
    n_participants, n_currencies, rows = batch
    args = (*columns(rows), n_participants, n_currencies)
    serial = k._net_positions_serial(*args)
    assert_matches_reference(serial, batch)
    assert_identical(serial, kp._net_positions_parallel(*args, chunks))


M = INT64_MAX
EDGE_CASES = [
    # every chunk's gross fits, their sum does not
    ([(0, 1, 0, M // 2 + 1), (1, 0, 0, M // 2 + 1), (0, 1, 0, 1), (0, 1, 0, 1)], (1, "overflow")),
    # an overflow before a bad obligation is the one reported
    ([(0, 1, 0, M), (1, 2, 0, 1), (2, 2, 0, 1), (0, 1, 0, 1)], (1, "overflow")),
    ([(0, 1, 0, M), (0, 1, 1, 1), (0, 9, 0, 1), (2, 3, 0, M)], (2, "creditor")),
    # a bad obligation before an overflow is the one reported
    ([(0, 1, 0, 5), (1, 1, 0, 5), (0, 1, 0, M), (0, 1, 0, M)], (1, "self")),
    ([(0, 1, 0, 1), (0, 1, 0, 1), (0, 1, 0, 1), (0, 1, 1, -1)], (3, "amount")),
    # the creditor's position would wrap at the second obligation
    ([(0, 1, 0, M), (0, 1, 0, 1)], (1, "overflow")),
    # the largest amounts in two currencies, no sum passes int64
    ([(0, 1, 0, M), (1, 0, 1, M), (2, 3, 0, 0)], (2, "amount")),
    ([(0, 1, 0, M - 3), (2, 3, 0, 1), (3, 2, 0, 2), (1, 0, 1, M)], None),
    ([(0, 1, 0, 1), (1, 2, 1, 2), (2, 3, 0, 3), (3, 0, 1, 4), (-1, 0, 0, 1)], (4, "debtor")),
    ([], None),
]


@pytest.mark.parametrize(("rows", "expected"), EDGE_CASES)
@pytest.mark.parametrize("chunks", [1, 2, 3, 4, 5])
def test_edge_cases_across_chunks(
    rows: list[ref.Row], expected: tuple[int, str] | None, chunks: int
) -> None:
    assert ref.first_problem(rows, 4, 2) == expected
    args = (*columns(rows), 4, 2)
    serial = k._net_positions_serial(*args)
    assert_matches_reference(serial, (4, 2, rows))
    assert_identical(serial, kp._net_positions_parallel(*args, chunks))


def random_columns(m: int, n: int, currencies: int, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    debtor = rng.integers(0, n, m, dtype=np.int32)
    creditor = rng.integers(0, n - 1, m, dtype=np.int32)
    creditor += creditor >= debtor
    currency = rng.integers(0, currencies, m, dtype=np.int32)
    amount = rng.integers(1, 10**9, m).astype(np.int64)
    return debtor, creditor, currency, amount


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let batches of a few hundred obligations take the parallel path."""
    monkeypatch.setattr(kp, "PARALLEL_CHUNK_MIN", 8)
    assert numba.get_num_threads() >= 2, "the parallel path needs two numba threads (2 cores)"


@pytest.mark.usefixtures("small_chunks")
def test_public_path_runs_the_parallel_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    parallel = kp._net_positions_parallel

    def spy(*args: object) -> Result:
        calls.append(args[-1])
        return parallel(*args)

    monkeypatch.setattr(kp, "_net_positions_parallel", spy)
    debtor, creditor, currency, amount = random_columns(300, 5, 3, seed=1)
    position, gross = net_positions(
        debtor, creditor, currency, amount, n_participants=5, n_currencies=3
    )
    serial = k._net_positions_serial(debtor, creditor, currency, amount, 5, 3)
    assert calls == [min(numba.get_num_threads(), 300 // 8)]
    assert np.array_equal(position.reshape(-1), serial[0])
    assert np.array_equal(gross, serial[1])
    amount[217] = 0
    amount[250] = INT64_MAX
    with pytest.raises(ObligationInputError) as caught:
        net_positions(debtor, creditor, currency, amount, n_participants=5, n_currencies=3)
    assert (caught.value.index, caught.value.code) == (217, "amount")
    amount[217] = 1
    with pytest.raises(ObligationInputError) as caught:
        net_positions(debtor, creditor, currency, amount, n_participants=5, n_currencies=3)
    rows = list(zip(*(a.tolist() for a in (debtor, creditor, currency, amount)), strict=True))
    assert ref.first_problem(rows, 5, 3) == (caught.value.index, caught.value.code)
    assert caught.value.code == "overflow"
    assert len(calls) == 3


@pytest.mark.usefixtures("small_chunks")
def test_concurrent_callers_get_identical_results() -> None:
    """One parallel launch at a time; a concurrent caller runs serially."""
    args = (*random_columns(400, 7, 2, seed=2), 7, 2)
    expected = k._net_positions_serial(*args)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: kp._net_positions(*args), range(16)))
    for result in results:
        assert_identical(result, expected)


def test_parallel_chunks_fall_back_to_serial(monkeypatch: pytest.MonkeyPatch) -> None:
    threads = numba.get_num_threads()
    chunk = kp.PARALLEL_CHUNK_MIN
    big = 1 << 26
    if threads >= 2:
        assert kp.parallel_chunks(big, 10_000, 4) == min(threads, big // chunk)
        assert kp.parallel_chunks(2 * chunk, 1000, 4) == 2
    assert kp.parallel_chunks(2 * chunk - 1, 1000, 4) == 1  # too small for two chunks
    assert kp.parallel_chunks(2 * chunk, chunk, 1) == 1  # tables larger than the batch
    assert kp.parallel_chunks(1 << 30, 1 << 23, 1) == 1  # tables beyond the memory bound
    monkeypatch.setattr(kp._Parallel, "usable", False)
    assert kp.parallel_chunks(big, 10_000, 4) == 1
    monkeypatch.setattr(kp._Parallel, "usable", True)
    numba.set_num_threads(1)
    try:
        assert kp.parallel_chunks(big, 10_000, 4) == 1
    finally:
        numba.set_num_threads(threads)


@pytest.mark.parametrize(("layer", "usable"), [("omp", False), ("workqueue", True), (None, True)])
def test_fork_handler_turns_the_parallel_path_off_after_openmp(
    monkeypatch: pytest.MonkeyPatch, layer: str | None, usable: bool
) -> None:
    def threading_layer() -> str:
        if layer is None:
            raise ValueError("no parallel launch yet")
        return layer

    monkeypatch.setattr(kp, "_threading_layer", threading_layer)
    monkeypatch.setattr(kp._Parallel, "usable", True)
    monkeypatch.setattr(kp._Parallel, "lock", kp._Parallel.lock)
    kp._after_fork_in_child()
    assert kp._Parallel.usable is usable
    assert not kp._Parallel.lock.locked()


@pytest.mark.jit_only  # needs compiled threads and fork
@pytest.mark.usefixtures("small_chunks")
def test_forked_child_after_a_parallel_run_still_nets() -> None:
    """GNU OpenMP aborts a forked child that launches threads again; the
    child must fall back to the serial kernel instead."""
    args = (*random_columns(300, 5, 2, seed=3), 5, 2)
    expected = k._net_positions_serial(*args)
    assert_identical(kp._net_positions(*args), expected)  # threads now running
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child process
        code = 1
        try:
            got = kp._net_positions(*args)
            same = got[2:] == expected[2:] and np.array_equal(got[0], expected[0])
            code = 0 if same else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.jit_only  # a million obligations in pure Python is too slow
def test_full_size_parallel_run_equals_serial() -> None:
    """Real chunk sizes: a clean batch, then an overflow in the second half
    and a bad obligation after it."""
    n, currencies = 1000, 4
    debtor, creditor, currency, amount = random_columns(1 << 20, n, currencies, seed=4)
    args = (debtor, creditor, currency, amount, n, currencies)
    serial = k._net_positions_serial(*args)
    assert serial[2] == k.OK
    assert_identical(kp._net_positions(*args), serial)
    for chunks in (2, 3, 4, 8):
        assert_identical(kp._net_positions_parallel(*args, chunks), serial)
    amount[(1 << 19) + 1000 :: 1000] = INT64_MAX // 64
    debtor[900_000] = creditor[900_000]
    serial = k._net_positions_serial(*args)
    assert serial[2] == k.OVERFLOW
    assert serial[3] < 900_000
    for chunks in (2, 3, 4, 8):
        assert_identical(kp._net_positions_parallel(*args, chunks), serial)


@pytest.mark.parametrize(
    ("environ", "policy"),
    [
        ({}, "PASSIVE"),
        ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE"),
        ({"GOMP_SPINCOUNT": "1000"}, None),
    ],
)
def test_openmp_waits_passively_unless_told_otherwise(
    environ: dict[str, str], policy: str | None
) -> None:
    tune_process_environment(environ)
    assert environ.get("OMP_WAIT_POLICY") == policy


def test_warm_up_runs_the_parallel_kernel_with_the_public_path_types(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker's warm-up must load the kernel that cycles of 2 x 2^18 obligations take,
    with the argument types they pass (else the first such cycle compiles anew)."""
    calls: list[tuple[object, ...]] = []
    parallel = kp._net_positions_parallel

    def spy(*args: object) -> Result:
        calls.append(tuple(getattr(a, "dtype", type(a)) for a in args))
        result = parallel(*args)
        assert np.array_equal(result[0], k._net_positions_serial(*args[:-1])[0])
        return result

    monkeypatch.setattr(kp, "_net_positions_parallel", spy)
    kp.warm_up_parallel()
    debtor, creditor, currency, amount = random_columns(300, 5, 1, seed=2)
    monkeypatch.setattr(kp, "PARALLEL_CHUNK_MIN", 8)
    net_positions(debtor, creditor, currency, amount, n_participants=5, n_currencies=1)
    assert len(calls) == 2
    assert calls[0] == calls[1]  # the same signature: nothing left to compile
