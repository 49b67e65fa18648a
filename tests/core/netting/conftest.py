"""Fixtures and generators shared by the netting tests."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from numpy.typing import NDArray

from tests.conftest import REPO

EXAMPLES = REPO.parent / "shared" / "examples" / "net"
NO_JIT = os.environ.get("NUMBA_DISABLE_JIT") == "1"

# Pure-Python kernels (the coverage run) are ~100x slower: fewer examples there.
settings.register_profile(
    "netting",
    max_examples=12 if NO_JIT else 60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
NETTING_SETTINGS = settings.get_profile("netting")

Instance = tuple[int, NDArray[np.int32], NDArray[np.int32], NDArray[np.int64], NDArray[np.int64]]


def capped_instance(rng: np.random.Generator, kind: str = "uniform") -> Instance:
    """A small random capped instance: 6-10 participants, 10-25 obligations,
    about half the participants capped below their gross outflow."""
    n = int(rng.integers(6, 11))
    m = int(rng.integers(10, 26))
    debtor = rng.integers(0, n, m)
    creditor = rng.integers(0, n - 1, m)
    creditor = np.where(creditor >= debtor, creditor + 1, creditor)
    if kind == "lognormal":
        amount = np.maximum(1, rng.lognormal(8, 1.5, m)).astype(np.int64)
    else:
        amount = rng.integers(1, 1001, m).astype(np.int64)
    outflow = np.zeros(n, np.int64)
    np.add.at(outflow, debtor, amount)
    cap = np.full(n, -1, np.int64)
    capped = rng.random(n) < (0.8 if kind == "dense" else 0.5)
    cap[capped] = (rng.random(int(capped.sum())) * outflow[capped] * 0.8).astype(np.int64)
    return n, debtor.astype(np.int32), creditor.astype(np.int32), amount, cap


@pytest.fixture
def instance_factory() -> Callable[[int, str], Instance]:
    return lambda seed, kind="uniform": capped_instance(np.random.default_rng(seed), kind)


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    """The worked example of DESIGN §7; its absence is a failure, not a skip."""
    assert (EXAMPLES / "obligations.csv").is_file(), f"missing worked example at {EXAMPLES}"
    return EXAMPLES
