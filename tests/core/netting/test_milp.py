"""The gridlock heuristic against the exact optimum (scipy.optimize.milp).

Small random capped instances (6-10 participants, 10-25 obligations, about
half the participants capped below their gross outflow, 80% in "dense"): the
heuristic must
settle at least 99.5% of the optimal value on average and never break a cap.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import Bounds, LinearConstraint, milp

from clearing_core.netting import resolve_gridlock
from tests.core.netting import reference as ref
from tests.core.netting.conftest import Instance, capped_instance

INSTANCES = 300


def optimum(instance: Instance) -> int:
    """Maximum settled value: sum_i a_i x_i subject to, for each capped p,
    outflow(p) - inflow(p) <= cap(p), x binary."""
    _, debtor, creditor, amount, cap = instance
    rows, upper = [], []
    for p in np.flatnonzero(cap >= 0):
        row = np.where(debtor == p, amount, 0) - np.where(creditor == p, amount, 0)
        rows.append(row.astype(float))
        upper.append(float(cap[p]))
    if not rows:
        return int(amount.sum())
    found = milp(
        -amount.astype(float),
        constraints=LinearConstraint(np.array(rows), -np.inf, np.array(upper)),
        integrality=np.ones(amount.shape[0]),
        bounds=Bounds(0, 1),
    )
    assert found.success, found.message
    chosen = np.round(found.x).astype(bool)
    assert ref.within_caps(
        debtor.tolist(), creditor.tolist(), amount.tolist(), cap.tolist(), chosen.tolist()
    )
    return int(amount[chosen].sum())


@pytest.mark.parametrize("kind", ["uniform", "lognormal", "dense"])
def test_heuristic_settles_at_least_99_5_percent_of_the_milp_optimum(kind: str) -> None:
    ratios = []
    for seed in range(INSTANCES):
        instance = capped_instance(np.random.default_rng(seed), kind)
        _, debtor, creditor, amount, cap = instance
        settled, _ = resolve_gridlock(debtor, creditor, amount, cap)
        assert ref.within_caps(
            debtor.tolist(), creditor.tolist(), amount.tolist(), cap.tolist(), settled.tolist()
        )
        best = optimum(instance)
        value = int(amount[settled].sum())
        assert value <= best
        ratios.append(value / best if best else 1.0)
    mean = float(np.mean(ratios))
    optimal = float(np.mean(np.isclose(ratios, 1)))
    print(f"{kind}: mean {mean:.5f} min {min(ratios):.3f} optimal in {optimal:.0%}")
    assert mean >= 0.995
