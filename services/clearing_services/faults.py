"""Named crash points for chaos tests: a process dies by SIGKILL at a point it names,
with the probability ``CLEARING_FAULTS`` gives it (``after_submit=0.3,before_commit=0.2``).

Why in the code and not only an outside ``kill -9``: the settlement agent's
guarantees are about exact moments (a transaction sent but its receipt not read;
acknowledgements written but not committed). A kill from outside lands there only
by luck; a named point makes each case happen, in a real process, by a real
SIGKILL. Unset (production), ``point`` is a dictionary lookup.
"""

from __future__ import annotations

import os
import random
import signal
import sys
from collections.abc import Mapping

ENV = "CLEARING_FAULTS"


def parse(text: str) -> dict[str, float]:
    """``name=probability,...`` -> {name: probability}; a bad entry is an error."""
    out: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        try:
            probability = float(value)
        except ValueError:
            raise ValueError(f"{ENV}: {item!r} is not name=probability") from None
        if not name or not 0.0 <= probability <= 1.0:
            raise ValueError(f"{ENV}: {item!r} is not name=probability (0..1)")
        out[name] = probability
    return out


class Faults:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.probabilities = parse((os.environ if env is None else env).get(ENV, ""))
        self._random = random.Random()

    def point(self, name: str) -> None:
        """Die here by SIGKILL with the configured probability (never, by default)."""
        probability = self.probabilities.get(name)
        if probability and self._random.random() < probability:
            print(f"fault: SIGKILL at {name}", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
