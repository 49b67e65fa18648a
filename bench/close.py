"""Benchmark of ``CurrencyLedger.add`` and ``CurrencyLedger.close``.

Builds N synthetic ``Obligation`` records (default 1,300,000; ~300 participants
with a Zipf-like skew, ids as fresh ``str`` objects the way a decoder makes
them, a share of meter obligations with ``remainder_ppm``/``carry_key``, some
failed-settlement obligations and a few capped participants so that some
obligations are deferred), times ``add`` for all of them (records are built in
chunks outside the timed region) and one ``close`` (kernels warmed first, with
``netting.warm_up()`` and a tiny close).

``--save PATH`` / ``--check PATH`` run a fixed-seed multi-cycle sequence
(``--check-n`` obligations, default 200,000, over three cycles with duplicates,
carried obligations and remainders) and pickle its outcomes, or compare them
with a pickle saved earlier (equal values of equal types, or the first difference).
The last line of stdout is one JSON object.
``--impl FILE`` loads another ``cycle.py`` (a copy of the code before a change) in
place of ``clearing_core.cycle.ledger``, for before/after figures in one checkout.
Run: ``.venv/bin/python bench/close.py [--n N] [--save|--check PATH] [--impl FILE]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import pickle
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

if "--impl" in sys.argv:  # another ledger.py as clearing_core.cycle.ledger
    import importlib.util

    _spec = importlib.util.spec_from_file_location(
        "clearing_core.cycle.ledger", sys.argv[sys.argv.index("--impl") + 1]
    )
    assert _spec is not None
    assert _spec.loader is not None
    sys.modules["clearing_core.cycle.ledger"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["clearing_core.cycle.ledger"])

from clearing_core.cycle.context import CycleContext, RailInfo
from clearing_core.cycle.ledger import CurrencyLedger, CycleOutcome
from clearing_core.cycle.ledger_columns import CountedObligation
from clearing_core.cycle.markers import marker_record
from clearing_core.cycle.settlement import RailSpec
from clearing_core.encoding.records import CycleClose, ObligationSource
from clearing_core.netting import warm_up

T0 = datetime(2026, 11, 24, 9, tzinfo=UTC)
PARTICIPANTS = 300
CHUNK = 100_000
SOURCES: tuple[ObligationSource, ...] = ("PAYMENT", "METER", "COMPUTE")


def participant_names() -> list[str]:
    return [f"PART-{i:04d}-{'ABCDEFGH'[i % 8]}" for i in range(PARTICIPANTS)]


def context(names: list[str]) -> CycleContext:
    rails = {
        "r-hub": RailInfo(RailSpec("r-hub", "hub", 2, 2), "ISO20022", None),
        "r-tok": RailInfo(RailSpec("r-tok", "direct", 2, 6), "TOKEN_BATCH", "TOK"),
    }
    rail_of = {p: ("r-hub" if i % 3 else "r-tok") for i, p in enumerate(names)}
    caps = dict.fromkeys(names[20:60:10], 150000000)  # a few payers capped
    identities = {p: (f"BIC{i:05d}XXX", None) for i, p in enumerate(names[::7])}
    return CycleContext(
        currency="CNH", iso_currency="CNY", currency_exponent=2, rails=rails, rail_of=rail_of,
        cap_minor=caps, identities=identities, refdata_digest="bench",
    )  # fmt: skip


def marker(marker_id: str) -> CycleClose:
    """A manual close of CNH (the ledger reads only its id)."""
    return marker_record(marker_id, "CNH", "MANUAL", "bench", T0)


def records(
    n: int, seed: int, start: int = 0, dup_share: float = 0.0
) -> Iterator[CountedObligation]:
    """n records in log order; ids fresh str objects (as a decoder would make them)."""
    rng = np.random.default_rng(seed)
    names = participant_names()
    weights = 1.0 / np.arange(1, PARTICIPANTS + 1) ** 0.9
    weights /= weights.sum()
    for base in range(0, n, CHUNK):
        m = min(CHUNK, n - base)
        deb = rng.choice(PARTICIPANTS, m, p=weights)
        cred = (deb + rng.integers(1, PARTICIPANTS, m)) % PARTICIPANTS
        amount = rng.integers(1, 2_000_000, m)
        kind = rng.integers(0, 100, m)
        ppm = rng.integers(0, 1_000_000, m)
        dup = rng.random(m) < dup_share
        back = rng.integers(1, 1000, m)
        for j in range(m):
            k = int(kind[j])
            seq = start + base + j
            if dup[j] and seq - int(back[j]) >= 0:
                seq -= int(back[j])
            rec: CountedObligation = {
                "obligation_id": f"o-{seq:09d}", "debtor_id": "".join(names[int(deb[j])]),
                "creditor_id": "".join(names[int(cred[j])]), "currency": "CNH",
                "amount_minor": int(amount[j]), "priority": 0, "source": SOURCES[k % 3],
                "remainder_ppm": 0, "carry_key": None,
            }  # fmt: skip
            if k < 20:  # metered: a remainder on the payer's contract, sometimes amount 0
                rec["source"] = "METER"
                rec["creditor_id"] = "".join(names[(int(deb[j]) + 1) % PARTICIPANTS])
                rec["remainder_ppm"] = int(ppm[j])
                rec["carry_key"] = f"ppa:{rec['debtor_id']}:{rec['creditor_id']}"
                if k < 3:
                    rec["amount_minor"] = 0
            elif k == 99:
                rec["source"], rec["priority"] = "FAILED_SETTLEMENT", 100
            yield rec


def time_adds(ledger: CurrencyLedger, n: int, seed: int) -> float:
    """Seconds spent in ``add`` only (records are built chunk by chunk outside)."""
    it = records(n, seed)
    spent = 0.0
    while True:
        chunk = [r for _, r in zip(range(CHUNK), it, strict=False)]
        if not chunk:
            return spent
        add = ledger.add
        t = time.perf_counter()
        for r in chunk:
            add(r)
        spent += time.perf_counter() - t


def snapshot(outcome: CycleOutcome, ledger: CurrencyLedger) -> dict[str, Any]:
    report = dict(outcome.report)
    return {
        "cycle_seq": outcome.cycle_seq, "batches": outcome.batches,
        "positions": outcome.positions, "report": report,
        "carried": outcome.carried.records(),
        "remainders": sorted((k, vars(r)) for k, r in ledger.remainders.items()),
    }  # fmt: skip


def check_run(n: int, seed: int) -> list[dict[str, Any]]:
    """Three cycles of n/3 records each (some duplicates), closing after each."""
    names = participant_names()
    ctx = context(names)
    ledger = CurrencyLedger("CNH")
    out = []
    third = n // 3
    for cycle in range(3):
        for r in records(third, seed + cycle, start=cycle * third, dup_share=0.01):
            ledger.add(r)
        outcome = ledger.close(marker(f"m{cycle}"), T0 + timedelta(minutes=cycle), ctx)
        out.append(snapshot(outcome, ledger))
    return out


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    if type(a) is not type(b):
        return f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        if list(a) != list(b):
            return f"{path}: keys {list(a)} != {list(b)}"
        return next((d for k in a if (d := first_difference(a[k], b[k], f"{path}.{k}"))), None)
    if isinstance(a, list | tuple):
        if len(a) != len(b):
            return f"{path}: length {len(a)} != {len(b)}"
        pairs = enumerate(zip(a, b, strict=True))
        return next((d for i, (x, y) in pairs if (d := first_difference(x, y, f"{path}[{i}]"))),
                    None)  # fmt: skip
    return None if a == b else f"{path}: {a!r} != {b!r}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_300_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--save", type=Path)
    parser.add_argument("--check", type=Path)
    parser.add_argument("--check-n", type=int, default=200_000)
    parser.add_argument("--impl", type=Path, help="time this cycle.py instead (e.g. the old one)")
    args = parser.parse_args()
    warm_up()
    warm = CurrencyLedger("CNH")  # a tiny close loads the remaining kernels (sums, instructions)
    for r in records(2_000, args.seed + 99):
        warm.add(r)
    warm.close(marker("warm"), T0, context(participant_names()))
    result: dict[str, Any] = {}
    if args.save or args.check:
        got = check_run(args.check_n, args.seed)
        blob = pickle.dumps(got, protocol=5)
        if args.save:
            args.save.write_bytes(blob)
        if args.check:
            want = pickle.loads(args.check.read_bytes())
            result["first_difference"] = first_difference(want, got)
            result["identical"] = result["first_difference"] is None  # values and types
            result["pickle_bytes_equal"] = blob == args.check.read_bytes()  # object sharing too
            result["check_deferred"] = [len(c["carried"]) for c in got]
    if args.n:
        names = participant_names()
        ledger = CurrencyLedger("CNH")
        gc.collect()
        add_seconds = time_adds(ledger, args.n, args.seed)
        count = ledger.open_count
        gc.collect()
        t = time.perf_counter()
        outcome = ledger.close(marker("m"), T0, context(names))
        close_seconds = time.perf_counter() - t
        result.update(
            n=args.n, open_obligations=count, deferred=len(outcome.carried.obligation_id),
            add_us_per_obligation=round(add_seconds / args.n * 1e6, 3),
            close_ms=round(close_seconds * 1e3, 1),
        )  # fmt: skip
    print(json.dumps(result))
    if result.get("identical") is False:
        sys.exit(1)


if __name__ == "__main__":
    main()
