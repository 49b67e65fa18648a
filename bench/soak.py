"""Memory of a worker over a long steady run: is it flat?

Starts a broker of its own, publishes the embedded default reference data
(its own 30-second cycle schedule, so the worker's scheduler closes cycles as in
production; no net debit caps, see ``e2e_support.bench_refdata``), starts
``clearing worker all`` with the default on-disk de-duplication store
(``CLEARING_STORE=rocksdb://``), and produces ``--rate`` valid mixed events a
second for ``--seconds``. The worker's RSS is sampled every second.

The last line of stdout is one JSON object: RSS per minute, its growth per
minute after the first ``--warmup`` seconds (a least-squares slope; 300 s by
default, the time the netting stage takes to fill its window of the last 8
cycles' obligation ids), the events sent and ingested, the cycles the scheduler
closed, and every minute the event ids the seen store held, RocksDB's memory and
the seen filters' bytes.

Run: ``.venv/bin/python bench/soak.py`` (600 s at 5,000 events/s by default).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Producer
from e2e_support import (
    IngestProgress,
    ProcessSampler,
    bench_refdata,
    log,
    own_broker,
    prepare,
)

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.encoding.schemas import SchemaCatalog
from clearing_core.workload.generator import EventGenerator
from clearing_services.ingest.worker import GROUP as INGEST_GROUP
from clearing_services.kafka.clients import producer_config, read_topic
from clearing_services.kafka.topics import CYCLES_TOPIC, EVENT_TOPIC_NAMES, event_topic

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e_pipeline import start_worker
from e2e_support import stop


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--rate", type=int, default=5_000, help="events a second")
    # the netting stage remembers the obligation ids of the last 8 closed cycles of each
    # currency (cycle.SEEN_CYCLES) to drop late duplicates: 8 x 30 s fill in 4 minutes
    parser.add_argument("--warmup", type=int, default=300, help="seconds left out of the slope")
    parser.add_argument("--seed", type=int, default=20261125)
    return parser.parse_args(argv)


class Feed:
    """Produces ``rate`` valid events a second, a second's worth at a time."""

    def __init__(self, bootstrap: str, codec: SingleObjectCodec, seed: int) -> None:
        self.codec = codec
        self.generator = EventGenerator(
            bench_refdata(False, None), seed=seed, now_ms=int(time.time() * 1000), prefix="soak"
        )
        self.producer = Producer(producer_config(bootstrap, **{"linger.ms": 20}))
        self.sent = 0

    def second(self, rate: int) -> None:
        self.generator.now_ms = int(time.time() * 1000)
        for event in self.generator.events(rate):
            spec = event_topic(event.kind)
            value = self.codec.encode(spec.record_type, event.record, topic=spec.topic)
            key = str(event.record[spec.key_field]).encode()
            while True:
                try:
                    self.producer.produce(spec.topic, key=key, value=value)
                    break
                except BufferError:
                    self.producer.poll(0.05)
            self.producer.poll(0)
        self.generator.accepted.clear()
        self.sent += rate


def slope_mb_per_min(samples: list[tuple[float, float]], warmup_seconds: float) -> float:
    points = np.array([(t, rss) for t, rss in samples if t >= warmup_seconds])
    if len(points) < 2:
        return float("nan")
    return float(np.polyfit(points[:, 0] / 60, points[:, 1], 1)[0])


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    codec = SingleObjectCodec(SchemaCatalog.load())
    with own_broker(tmp / "broker") as bootstrap:
        prepare(bootstrap, codec, bench_refdata(False, None), [])
        os.environ["CLEARING_LOG_LEVEL"] = "info"  # the worker logs its seen store's memory
        worker = start_worker(bootstrap, tmp / "worker", "all", "soak-1", store="rocksdb://")
        sampler = ProcessSampler(worker.pid)
        feed, progress = Feed(bootstrap, codec, args.seed), None
        samples: list[tuple[float, float]] = []
        t0 = time.monotonic()
        try:
            while (elapsed := time.monotonic() - t0) < args.seconds:
                if worker.poll() is not None:
                    raise RuntimeError(f"the worker exited with {worker.returncode}")
                feed.second(args.rate)
                samples.append((elapsed, sampler.sample_rss_mb()))
                if progress is None and elapsed > 10:
                    progress = IngestProgress(bootstrap, INGEST_GROUP, EVENT_TOPIC_NAMES)
                if int(elapsed) % 60 == 0:
                    done = progress.committed() if progress else 0
                    log(f"{elapsed:4.0f} s: {feed.sent:,} sent, {done:,} ingested, "
                        f"RSS {samples[-1][1]:.0f} MB")  # fmt: skip
                time.sleep(max(0.0, (len(samples)) - (time.monotonic() - t0)))
            feed.producer.flush(60)
            ingested = progress.committed() if progress else 0
        finally:
            stop(worker)
            sampler.stop()
        reports = [codec.decode(r.value).record
                   for r in read_topic(bootstrap, CYCLES_TOPIC, "soak-cycles")]  # fmt: skip
    per_minute = [round(rss, 1) for t, rss in samples if int(t) % 60 == 0 or t == samples[-1][0]]
    held = re.findall(r"(\d+) event ids held, RocksDB memory ([\d.]+) MB, filters ([\d.]+) MB",
                      (tmp / "worker" / "soak-1.log").read_text(errors="replace"))  # fmt: skip
    return {
        "rss_growth_mb_per_min": round(slope_mb_per_min(samples, args.warmup), 2),
        "rss_mb_per_minute": per_minute,
        "rss_mb_max": round(sampler.rss_mb_max, 1),
        "seconds": args.seconds, "rate_per_s": args.rate, "events_sent": feed.sent,
        "events_ingested_at_end": ingested, "cycles": len(reports),
        "obligations_in_cycles": sum(r["obligation_count"] for r in reports),
        "worker_cpu_s": round(sampler.cpu_seconds, 1),
        # from the worker's INFO log, every minute: (event ids held, MB of RocksDB memory,
        # MB of the seen filters)
        "seen_ids_rocksdb_filter_mb": [(int(n), float(mb), float(f)) for n, mb, f in held[5::6]],
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="clearing-soak-"))
    try:
        print(json.dumps(run(args, tmp)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
