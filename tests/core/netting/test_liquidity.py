"""Liquidity-limited netting: caps, re-admission, ties, determinism, invariance."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clearing_core.errors import InputError
from clearing_core.netting import NO_CAP, net_currency, net_obligations, resolve_gridlock
from tests.core.netting import reference as ref
from tests.core.netting.conftest import NETTING_SETTINGS, NO_JIT, Instance, capped_instance

INT64_MAX = 2**63 - 1


@st.composite
def capped_instances(draw: st.DrawFn, distinct: bool = False) -> Instance:
    n = draw(st.integers(2, 7))
    m = draw(st.integers(1, 14))
    debtor = np.array([draw(st.integers(0, n - 1)) for _ in range(m)], dtype=np.int32)
    creditor = np.array([draw(st.integers(0, n - 2)) for _ in range(m)], dtype=np.int32)
    creditor += creditor >= debtor
    if distinct:
        values = draw(st.lists(st.integers(1, 10**6), min_size=m, max_size=m, unique=True))
    else:
        values = [draw(st.integers(1, 1000)) for _ in range(m)]
    cap = [draw(st.one_of(st.just(-1), st.integers(0, 2000))) for _ in range(n)]
    return n, debtor, creditor, np.array(values, dtype=np.int64), np.array(cap, dtype=np.int64)


def settle(instance: Instance, **kwargs: object) -> tuple[np.ndarray, np.ndarray]:
    _, debtor, creditor, amount, cap = instance
    return resolve_gridlock(debtor, creditor, amount, cap, **kwargs)  # type: ignore[arg-type]


def fits(instance: Instance, settled: np.ndarray) -> bool:
    _, debtor, creditor, amount, cap = instance
    lists = (debtor.tolist(), creditor.tolist(), amount.tolist(), cap.tolist())
    return ref.within_caps(*lists, settled.tolist())


def assert_within_caps(instance: Instance, settled: np.ndarray, position: np.ndarray) -> None:
    _, debtor, creditor, amount, _ = instance
    assert fits(instance, settled)
    rows = zip(debtor.tolist(), creditor.tolist(), amount.tolist(), settled.tolist(), strict=True)
    expected = ref.positions([(d, c, 0, a) for d, c, a, s in rows if s])
    got = {p: int(position[p]) for p in np.flatnonzero(position)}
    assert got == {p: v for (p, _), v in expected.items()}


@NETTING_SETTINGS
@given(capped_instances())
def test_caps_hold_and_nothing_deferred_fits_alone(instance: Instance) -> None:
    _, debtor, creditor, amount, cap = instance
    settled, position = settle(instance)
    assert_within_caps(instance, settled, position)
    for i in np.flatnonzero(~settled):  # re-admission is complete
        again = settled.copy()
        again[i] = True
        assert not ref.within_caps(
            debtor.tolist(), creditor.tolist(), amount.tolist(), cap.tolist(), again.tolist()
        )
    assert np.all(settled[cap[debtor] < 0])  # an uncapped debtor's obligation always settles


@NETTING_SETTINGS
@given(capped_instances())
def test_never_above_the_exact_optimum(instance: Instance) -> None:
    _, debtor, creditor, amount, cap = instance
    settled, _ = settle(instance)
    optimum = ref.best_settled_value(
        debtor.tolist(), creditor.tolist(), amount.tolist(), cap.tolist()
    )
    assert int(amount[settled].sum()) <= optimum


@NETTING_SETTINGS
@given(capped_instances())
def test_deterministic_and_single_start_is_valid(instance: Instance) -> None:
    first = settle(instance)
    second = settle(instance)
    assert np.array_equal(first[0], second[0])
    assert np.array_equal(first[1], second[1])
    quick, position = settle(instance, starts=1)
    assert_within_caps(instance, quick, position)
    assert int(instance[3][quick].sum()) <= int(instance[3][first[0]].sum())


@NETTING_SETTINGS
@given(capped_instances(distinct=True), st.randoms(use_true_random=False))
def test_obligation_order_does_not_matter(instance: Instance, rnd: object) -> None:
    n, debtor, creditor, amount, cap = instance
    order = np.arange(amount.shape[0])
    rnd.shuffle(order)  # type: ignore[attr-defined]
    for mode in ("hub", "direct"):
        base = net_currency(debtor, creditor, amount, n_participants=n, cap_minor=cap, mode=mode)
        perm = net_currency(
            debtor[order],
            creditor[order],
            amount[order],
            n_participants=n,
            cap_minor=cap,
            mode=mode,
        )
        assert np.array_equal(base.position_minor, perm.position_minor)
        assert sorted(order[perm.deferred_idx].tolist()) == base.deferred_idx.tolist()
        for field in ("payer_idx", "payee_idx", "amount_minor"):
            assert np.array_equal(
                getattr(base.instructions, field), getattr(perm.instructions, field)
            )


@NETTING_SETTINGS
@given(capped_instances())
def test_netting_the_settled_set_again_defers_nothing(instance: Instance) -> None:
    n, debtor, creditor, amount, cap = instance
    first = net_currency(debtor, creditor, amount, n_participants=n, cap_minor=cap)
    keep = np.ones(amount.shape[0], bool)
    keep[first.deferred_idx] = False
    if not keep.any():
        return
    again = net_currency(
        debtor[keep], creditor[keep], amount[keep], n_participants=n, cap_minor=cap
    )
    assert again.deferred_count == 0
    assert np.array_equal(again.position_minor, first.position_minor)
    assert again.settled_gross_minor == first.settled_gross_minor


def test_lower_priority_is_deferred_first_among_equal_amounts() -> None:
    # participant 0 may owe 200 net; it owes three times 100: one must wait
    debtor = np.array([0, 0, 0], np.int32)
    creditor = np.array([1, 2, 1], np.int32)
    amount = np.array([100, 100, 100], np.int64)
    cap = np.array([200, NO_CAP, NO_CAP], np.int64)
    settled, _ = resolve_gridlock(debtor, creditor, amount, cap, priority=[5, 1, 3])
    assert settled.tolist() == [True, False, True]
    settled, _ = resolve_gridlock(debtor, creditor, amount, cap)  # no priority: the latest waits
    assert settled.tolist() == [True, True, False]


def test_larger_value_beats_priority() -> None:
    debtor = np.array([0, 0], np.int32)
    creditor = np.array([1, 1], np.int32)
    cap = np.array([150, NO_CAP], np.int64)
    settled, _ = resolve_gridlock(debtor, creditor, [100, 120], cap, priority=[9, 0])
    assert settled.tolist() == [False, True]


def test_a_cycle_settles_whole_although_no_leg_fits_alone() -> None:
    # 0 and 1 owe each other 1000 and may not be net debtors; 0 also owes 2 a little
    debtor = np.array([0, 1, 0], np.int32)
    creditor = np.array([1, 0, 2], np.int32)
    cap = np.array([0, 0, NO_CAP], np.int64)
    settled, position = resolve_gridlock(debtor, creditor, [1000, 1000, 5], cap)
    assert settled.tolist() == [True, True, False]
    assert position.tolist() == [0, 0, 0]


def test_caps_at_int64_max_do_not_overflow() -> None:
    debtor = np.array([0, 1], np.int32)
    creditor = np.array([1, 0], np.int32)
    amount = np.array([INT64_MAX - 10, 7], np.int64)
    for cap in ([INT64_MAX, 0], [0, INT64_MAX], [INT64_MAX, INT64_MAX]):
        settled, position = resolve_gridlock(debtor, creditor, amount, np.array(cap, np.int64))
        assert int(position.sum()) == 0
    settled, _ = resolve_gridlock(debtor, creditor, amount, np.array([0, INT64_MAX], np.int64))
    assert settled.tolist() == [False, True]


@pytest.mark.parametrize("kind", ["uniform", "lognormal", "dense"])
def test_seeded_instances_respect_caps_and_optimum(kind: str) -> None:
    ratios = []
    for seed in range(8 if NO_JIT else 40):
        instance = capped_instance(np.random.default_rng(1000 + seed), kind)
        _, debtor, creditor, amount, cap = instance
        settled, position = settle(instance)
        assert_within_caps(instance, settled, position)
        if int((cap[debtor] >= 0).sum()) <= 14:
            best = ref.best_settled_value(
                debtor.tolist(), creditor.tolist(), amount.tolist(), cap.tolist()
            )
            assert int(amount[settled].sum()) <= best
            ratios.append(int(amount[settled].sum()) / best if best else 1.0)
    assert not ratios or np.mean(ratios) >= 0.97


def test_large_cycle_with_many_equal_amounts() -> None:
    """One heavy payer with thousands of equal outflows (the tree paths) and a
    hub-like structure: caps hold, ties fall on the lowest priorities."""
    rng = np.random.default_rng(7)
    m = 3_000 if NO_JIT else 60_000
    n = 50
    debtor = np.where(rng.random(m) < 0.5, 0, rng.integers(0, n, m)).astype(np.int32)
    creditor = rng.integers(1, n, m).astype(np.int32)
    creditor[creditor == debtor] = (creditor[creditor == debtor] % (n - 1)) + 1
    amount = np.where(debtor == 0, 100, rng.integers(1, 500, m)).astype(np.int64)
    priority = rng.integers(0, 4, m)
    cap = np.where(rng.random(n) < 0.5, rng.integers(0, 2000, n), NO_CAP).astype(np.int64)
    cap[0] = 1000
    result = net_currency(
        debtor, creditor, amount, n_participants=n, cap_minor=cap, priority=priority, mode="direct"
    )
    assert result.deferred_count > 0
    heavy = debtor == 0
    deferred = np.zeros(m, bool)
    deferred[result.deferred_idx] = True
    settled_prio = priority[heavy & ~deferred]
    deferred_prio = priority[heavy & deferred]
    if settled_prio.size and deferred_prio.size:
        assert deferred_prio.min() <= settled_prio.max()
    assert result.position_minor[0] >= -1000


def test_cap_array_is_validated() -> None:
    with pytest.raises(InputError, match="cap_minor"):
        resolve_gridlock([0], [1], [5], np.array([-2, -1]))
    with pytest.raises(InputError, match="cap_minor"):
        resolve_gridlock([0], [1], [5], np.array([[0, 0]]))
    with pytest.raises(InputError, match="starts"):
        resolve_gridlock([0], [1], [5], np.array([0, -1]), starts=3)
    with pytest.raises(InputError, match="priority"):
        resolve_gridlock([0], [1], [5], np.array([0, -1]), priority=[1, 2])


def test_per_currency_path_matches_batch_path(
    instance_factory: Callable[[int, str], Instance],
) -> None:
    a = instance_factory(1, "uniform")
    b = instance_factory(2, "lognormal")
    n = max(a[0], b[0])
    debtor = np.concatenate([a[1], b[1]])
    creditor = np.concatenate([a[2], b[2]])
    amount = np.concatenate([a[3], b[3]])
    currency = np.repeat([1, 0], [a[3].shape[0], b[3].shape[0]])
    caps = np.full((n, 2), NO_CAP, np.int64)
    caps[: a[0], 1] = a[4]
    caps[: b[0], 0] = b[4]
    batch = net_obligations(
        debtor,
        creditor,
        currency,
        amount,
        n_participants=n,
        n_currencies=2,
        cap_minor=caps,
        mode="direct",
    )
    assert [r.currency_idx for r in batch.currencies] == [0, 1]
    one = net_currency(
        a[1], a[2], a[3], n_participants=n, cap_minor=caps[:, 1], mode="direct", currency_idx=1
    )
    got = batch.currencies[1]
    assert np.array_equal(got.position_minor, one.position_minor)
    assert got.deferred_idx.tolist() == one.deferred_idx.tolist()  # currency 1 comes first
    other = batch.currencies[0]
    assert np.all(other.deferred_idx >= a[3].shape[0])
