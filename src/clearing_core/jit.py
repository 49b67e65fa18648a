"""The one way every kernel is compiled: ``njit(cache=True)``, never fastmath.

Why a typed wrapper: numba is untyped, so a bare ``@njit`` would erase the
signature for mypy; this keeps each kernel's annotations visible to callers.
Integer money must never be reassociated or vectorised unsafely, hence no
fastmath; ``cache=True`` so a CLI run does not pay compilation again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt
from numba import njit

F = TypeVar("F", bound=Callable[..., Any])

IntArray = npt.NDArray[np.integer[Any]]
I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]


def kernel(fn: F) -> F:
    """Compile ``fn`` lazily with numba, cached on disk, no fastmath."""
    return cast(F, njit(cache=True)(fn))


def parallel_kernel(fn: F) -> F:
    """``njit(parallel=True, cache=True)``, never fastmath, typed for mypy."""
    return cast(F, njit(parallel=True, cache=True)(fn))
