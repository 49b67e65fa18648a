"""The ingest stage's CPU per event, offline: ``BatchPreparer.prepare`` and the seen
store's add, on generated batches, against a store already holding ``--held`` ids.

Why offline: a full ``bench/e2e.py`` run moves by 20-40% with the shared host, and
the levers left on the ingest path are worth tenths of a microsecond per event.
This runs the worker's own code (``clearing_services.ingest.prepare``, the
production RocksDB store) without a broker, in one process, so that two versions
of the code can be compared by ``farm-bench`` or by alternating runs.

Each round builds a fresh store (RocksDB on disk by default, ``--store memory``),
fills it with ``--held`` ids, then prepares every batch and adds what each
accepted, as the worker does after its commit. Reported per event: the CPU
microseconds of each round and their median, and the obligations per event.

Run: ``.venv/bin/python bench/prepare.py`` (200,000 events in batches of the
worker's default, 1M held ids, three rounds: about a minute). The last line of
stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from e2e_support import bench_refdata, log
from ingest_batches import generated_batches

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.encoding.schemas import SchemaCatalog
from clearing_core.ingest.seen_text import seen_entries
from clearing_services.ingest.prepare import BatchPreparer, Groups
from clearing_services.ingest.seen_store import SeenStore
from clearing_services.process.worker import tune_gc
from clearing_services.settings import DEFAULT_INGEST_BATCH_MAX

HELD_CHUNK = 100_000  # ids added to the store at a time before a round


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=DEFAULT_INGEST_BATCH_MAX)
    parser.add_argument("--held", type=int, default=1_000_000, help="ids in the store before")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--store", choices=("rocksdb", "memory"), default="rocksdb")
    parser.add_argument("--seed", type=int, default=20261207)
    return parser.parse_args(argv)


def filled_store(folder: Path | None, tps: list[tuple[str, int]], held: int, now_ms: int
                 ) -> SeenStore:  # fmt: skip
    """A store owning ``tps``, holding ``held`` ids spread over them."""
    store = SeenStore(folder)
    for tp in tps:
        store.assign(tp, [])
    for start in range(0, held, HELD_CHUNK):
        ids = [f"held-{i}" for i in range(start, min(held, start + HELD_CHUNK))]
        tp = tps[(start // HELD_CHUNK) % len(tps)]
        entries = seen_entries(["0" * 32] * len(ids), [now_ms] * len(ids),
                               [tp[1]] * len(ids), range(len(ids)))  # fmt: skip
        store.add(tp, dict(zip(ids, entries, strict=True)), now_ms)
    return store


def one_round(preparer: BatchPreparer, batches: list[Groups], store: SeenStore) -> float:
    """Every batch prepared and its accepted ids added; CPU seconds."""
    started = time.process_time()
    for groups in batches:
        output = preparer.prepare(groups, store.of)
        for tp, (updates, newest_ms) in output.accepted.items():
            store.add(tp, updates, newest_ms)
    return time.process_time() - started


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    codec = SingleObjectCodec(SchemaCatalog.load())
    refdata = bench_refdata(keep_caps=False)
    now_ms = int(time.time() * 1000)
    batches = generated_batches(refdata, codec, args.events, args.batch, args.seed, now_ms)
    tps = sorted({tp for groups in batches for tp in groups})
    preparer = BatchPreparer(codec, lambda: refdata)
    obligations = sum(preparer.prepare(g, lambda tp: {}).obligations_out for g in batches)
    rounds: list[float] = []
    tune_gc()  # the worker's collector settings: the batches held here are its heap
    gc.freeze()
    with tempfile.TemporaryDirectory(prefix="prepare-bench-") as tmp:
        # untimed: the store's kernels (filter, lookups) load on their first batch
        warm = filled_store(Path(tmp) / "warm" if args.store == "rocksdb" else None, tps, 10,
                            now_ms)  # fmt: skip
        one_round(preparer, batches[:1], warm)
        warm.close()
        for round_no in range(args.rounds):
            folder = Path(tmp) / str(round_no) if args.store == "rocksdb" else None
            store = filled_store(folder, tps, args.held, now_ms)
            seconds = one_round(preparer, batches, store)
            store.close()
            rounds.append(1e6 * seconds / args.events)
            log(f"round {round_no + 1}: {rounds[-1]:.3f} us per event")
    return {
        "prepare_us_per_event": round(statistics.median(rounds), 3),
        "rounds_us_per_event": [round(r, 3) for r in rounds],
        "obligations_per_event": round(obligations / args.events, 4),
        "events": args.events, "batch": args.batch, "held": args.held, "store": args.store,
    }  # fmt: skip


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
