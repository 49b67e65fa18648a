"""End-to-end throughput of the clearing pipeline against a real broker of its own.

1. Starts a single-node Kafka broker in a temporary folder on free ports, creates
   the topics, publishes the embedded default reference data (every rail's
   schedule set to one day, so that the bench, not the worker's own scheduler,
   decides when cycles close) and pre-loads ``--events`` valid mixed events
   (EventGenerator: meter 50%, compute 35%, payment 15%) keyed as DESIGN section 4
   says, with confluent-kafka, encoded 50,000 at a time. The default's net debit
   caps are left out unless ``--keep-caps`` (why: ``e2e_support.bench_refdata``).
2. On the same topics, one after the other:
   a. raw ceiling: a confluent-kafka consumer of its own group reads the three
      event topics with ``consume(num_messages=10000)`` and does nothing else;
   b. naive pipeline: ``bench/e2e_naive.py``, a per-event Faust agent in its own
      process (decode, check and price one event, ``await topic.send`` each
      obligation); its rate is taken over its first ``--naive-events`` outputs,
      from the output records' timestamps;
   c. this project (``bench/e2e_pipeline.py``): ``--ingest-workers`` processes,
      one ``clearing worker all`` (ingest loop, netting loop, acks agent) and the
      rest ``clearing worker ingest`` (``--netting-apart``: a ``clearing worker
      netting`` and that many ``clearing worker ingest``), every guarantee on
      (Kafka transactions, de-duplication by event id, invariants per cycle). The
      bench closes every currency but the largest one each ``--close-every``
      events committed by the ingest group, and all of them at the end. Rate:
      events from the first obligation's timestamp to the last cycle report's;
      each worker's RSS is sampled each second. Then an audit from the log
      (``clearing_services.operations.audit``): every event accepted once and
      carried by exactly one logged obligation.
   c'. the fair ceiling (``bench/e2e_echo.py``): a transactional echo with as many
      processes as (c) has ingest workers, writing per event as many bytes as
      (c)'s ingest stage wrote, committing transactions of the same batch size and
      doing nothing else; run after (c) and again at the end, the ratio against
      their mean (``ratio_vs_echo``). The workers' seen-id store is the production
      default, RocksDB on disk (``--seen-store memory`` for comparison).
   d. one cycle of ``--big-cycle`` obligations (1M) written straight to
      clearing.obligations and closed by a fresh ``clearing worker netting``
      (``bench/e2e_close.py``); the p99 close covers (c) and (d).
   The two baselines run before and again after (c) and (d), each in a fresh consumer
   group; their ratios use the mean of the two, and both are in the JSON, so a
   change in the machine's load during the run shows as a spread.
   With ``--profile S`` py-spy samples the worker for S seconds while it ingests
   (profiling slows it: take the figures from a run without it).
3. Progress goes to stderr; the last line of stdout is one JSON object.

Run: ``.venv/bin/python bench/e2e.py`` (``--quick``: 200k events; ``--events N``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import e2e_profile
import numpy as np
from confluent_kafka import Consumer, KafkaError, KafkaException
from e2e_close import big_cycle
from e2e_echo import echo, written_bytes_per_event
from e2e_pipeline import SEEN_STORES, pipeline, start_worker
from e2e_support import (
    bench_refdata,
    combine,
    host_speed,
    log,
    own_broker,
    partition_counts,
    preload,
    prepare,
    stop,
)
from e2e_warm import warm_broker

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.encoding.schemas import SchemaCatalog
from clearing_services.kafka.clients import consumer_config, read_topic
from clearing_services.kafka.topics import EVENT_TOPIC_NAMES
from clearing_services.settings import load_settings

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
NAIVE_OUT = "bench.naive.obligations"


def raw_consume(bootstrap: str, total: int) -> dict[str, float]:
    """Read every event record with batch ``consume`` and nothing else."""
    consumer = Consumer(consumer_config(bootstrap, f"bench-e2e-raw-{time.time_ns()}"))
    consumer.subscribe(list(EVENT_TOPIC_NAMES))
    count, first_batch, t_first, t_last = 0, 0, 0.0, 0.0
    deadline = time.monotonic() + 600
    try:
        while count < total and time.monotonic() < deadline:
            messages = consumer.consume(num_messages=10_000, timeout=1.0)
            for message in messages:
                error = message.error()
                if error is not None and error.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(error)
            got = sum(1 for m in messages if m.error() is None)
            if got and not count:
                t_first, first_batch = time.perf_counter(), got
            count += got
            t_last = time.perf_counter() if got else t_last
    finally:
        consumer.close()
    if count < total:
        raise RuntimeError(f"raw consumer read {count:,} of {total:,} records")
    # The first batch's records arrived before the clock started: not counted.
    return {"raw_consume_per_s": (count - first_batch) / (t_last - t_first),
            "raw_seconds": t_last - t_first}  # fmt: skip


def naive_faust(bootstrap: str, tmp: Path, k: int, run: int) -> dict[str, float]:
    """The naive agent's rate over its first ``k`` outputs (run ``run``: its own app id,
    so its own consumer group, and its own output topic)."""
    out_topic = f"{NAIVE_OUT}.{run}"
    env = {**os.environ, "BENCH_BOOTSTRAP": bootstrap, "BENCH_OUT": out_topic,
           "BENCH_DATADIR": str(tmp / f"naive-{run}"),
           "BENCH_APP_ID": f"clearing-bench-naive-{run}"}  # fmt: skip
    with (tmp / f"naive-{run}.log").open("w") as out:
        process = subprocess.Popen([sys.executable, str(HERE / "e2e_naive.py")], env=env,
                                   cwd=REPO, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + 120 + k / 200
        try:
            while (done := sum(partition_counts(bootstrap, out_topic))) < k:
                if process.poll() is not None:
                    raise RuntimeError(f"naive agent exited; see {out.name}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"naive agent: {done:,} of {k:,} outputs in time")
                time.sleep(1.0)
        finally:
            stop(process)
    records = read_topic(bootstrap, out_topic, f"bench-e2e-naive-{run}")
    stamps = sorted(r.timestamp_ms for r in records)
    stamps = stamps[:k]
    seconds = (stamps[-1] - stamps[0]) / 1000
    return {"naive_faust_per_s": (len(stamps) - 1) / seconds, "naive_seconds": seconds}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--quick", action="store_true", help="a 200k-event smoke run")
    add = parser.add_argument
    # fmt: off
    add("--naive-events", type=int, default=200_000,
        help="outputs of the naive agent to time (capped at --events)")
    add("--close-every", type=int, default=250_000,
        help="close every currency but --big-currency each N events ingested")
    add("--big-currency", default="CNH",
        help="closed only at the end: its last cycle holds all its obligations")
    add("--seed", type=int, default=20261124)
    add("--big-cycle", type=int, default=1_000_000,
        help="then one cycle of N obligations in a netting worker (0: none)")
    add("--ingest-workers", type=int, default=1,
        help="ingest worker processes: one 'worker all', the rest 'worker ingest'")
    add("--netting-apart", action="store_true",
        help="a 'worker netting' process, and every ingest worker 'worker ingest'")
    add("--profile", type=int, default=0, metavar="S",
        help="py-spy the worker for S seconds while it ingests")
    add("--profile-out", type=Path, default=HERE / "out" / "e2e-profile.txt")
    add("--keep", action="store_true", help="keep the temporary folder")
    add("--warm-records", type=int, default=1_000_000,
        help="records of the broker warm-up (0: none, the first phase to run a path "
             "pays its JIT compilation)")
    add("--seen-store", choices=sorted(SEEN_STORES), default="rocksdb",
        help="the ingest workers' seen-id store: rocksdb (the production default, on "
             "disk) or memory")
    add("--keep-caps", action="store_true",
        help="keep the default's net debit caps (see bench_refdata)")
    # fmt: on
    args = parser.parse_args(argv)
    if args.quick:
        args.events = min(args.events, 200_000)
        args.big_cycle = min(args.big_cycle, 200_000)
        args.naive_events = min(args.naive_events, 50_000)
        args.warm_records = min(args.warm_records, 200_000)
    args.naive_events = min(args.naive_events, args.events)
    return args


def baselines(bootstrap: str, tmp: Path, args: argparse.Namespace, run: int) -> dict[str, float]:
    """Raw ceiling, naive agent and the host's speed, measured before (run 1) and after
    (run 2) ours, so that a change in the machine's load during the run shows as a
    spread."""
    raw = raw_consume(bootstrap, args.events)
    log(f"raw consume ({run}): {raw['raw_consume_per_s']:,.0f} records/s")
    naive = naive_faust(bootstrap, tmp, args.naive_events, run)
    log(f"naive Faust agent ({run}): {naive['naive_faust_per_s']:,.0f} events/s")
    host = host_speed()
    log(f"host ({run}): add {host['host_add_us']:.2f} us, close {host['host_close_ms']:.0f} ms")
    return raw | naive | host


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    codec = SingleObjectCodec(SchemaCatalog.load())
    refdata = bench_refdata(args.keep_caps)
    phases: dict[str, float] = {}
    with own_broker(tmp / "broker") as bootstrap:
        log(f"broker at {bootstrap}; preloading {args.events:,} events")
        prepare(bootstrap, codec, refdata, [f"{NAIVE_OUT}.1", f"{NAIVE_OUT}.2"])
        t0 = time.perf_counter()
        loaded = preload(bootstrap, codec, refdata, args.events, args.seed)
        phases["preload_s"] = time.perf_counter() - t0
        loaded["partition_records"] = {t: partition_counts(bootstrap, t) for t in EVENT_TOPIC_NAMES}
        log(f"preloaded in {phases['preload_s']:.0f} s: {json.dumps(loaded)}")
        if args.warm_records:
            phases |= warm_broker(bootstrap, args.warm_records)
            log(f"broker warmed up in {phases['broker_warm_s']:.0f} s (bench/e2e_warm.py)")
        before = baselines(bootstrap, tmp, args, run=1)
        args.profile_out.parent.mkdir(parents=True, exist_ok=True)
        ours = pipeline(bootstrap, codec, refdata, tmp, args)
        log(f"pipeline: {ours['events_per_s']:,.0f} events/s")
        echo_args = (bootstrap, tmp, args.events, args.ingest_workers,
                     written_bytes_per_event(tmp / "broker", args.events),
                     load_settings().ingest_batch_max)  # fmt: skip
        echoes = [echo(*echo_args, run=1)]
        if args.big_cycle:
            log(f"one cycle of {args.big_cycle:,} obligations in a netting worker")
            ours |= big_cycle(bootstrap, codec, refdata, args.big_currency, args.big_cycle,
                              lambda: start_worker(bootstrap, tmp / "big", "netting", "big-1"),
                              args.seed)  # fmt: skip
            log(f"big cycle: {ours['big_cycle_close_to_batch_ms']:,.0f} ms close to batch")
        # the p99 over every cycle closed in the run, the big one included
        every = [
            *ours.pop("close_ms_all"),
            *([ours["big_cycle_close_to_batch_ms"]] if args.big_cycle else []),
        ]
        ours["p99_cycle_close_to_batch_ms"] = float(np.percentile(every, 99))
        after = baselines(bootstrap, tmp, args, run=2)
        echoes.append(echo(*echo_args, run=2))
        ours |= echo_fields(echoes, echo_args[4])
    raw, naive, host = combine(before, after)
    if args.profile:
        areas = e2e_profile.summarise(args.profile_out)
        log("profile of the worker (share of samples):\n" + e2e_profile.render(areas))
        ours["profile_areas"] = {k: round(v, 4) for k, v in areas.items()}
    return {"phases": phases, "raw": raw | host, "naive": naive, "ours": ours, "loaded": loaded}


def result_line(args: argparse.Namespace, parts: dict[str, Any]) -> dict[str, Any]:
    raw, naive, ours = parts["raw"], parts["naive"], parts["ours"]
    head = {
        "events_per_s": ours.pop("events_per_s"),
        "raw_consume_per_s": raw.pop("raw_consume_per_s"),
        "naive_faust_per_s": naive.pop("naive_faust_per_s"),
    }
    head["echo_per_s"] = ours.pop("echo_per_s")
    head["ratio_vs_echo"] = head["events_per_s"] / head["echo_per_s"]
    head["seen_store"] = args.seen_store
    head["ratio_vs_raw"] = head["events_per_s"] / head["raw_consume_per_s"]
    head["ratio_vs_naive"] = head["events_per_s"] / head["naive_faust_per_s"]
    head["p99_cycle_close_to_batch_ms"] = ours.pop("p99_cycle_close_to_batch_ms")
    head["rss_mb_max"] = ours.pop("rss_mb_max")
    head |= cpu_per_event(ours, raw, args.events)
    rest = {"events": args.events, "naive_events": args.naive_events, "quick": args.quick,
            "net_debit_caps": args.keep_caps,
            "profiled": bool(args.profile),
            **parts["phases"], **raw, **naive, **ours, **parts["loaded"]}  # fmt: skip
    line = head | rest
    for key, value in line.items():
        if isinstance(value, float):
            line[key] = round(value, 3 if value < 100 else 1)
    return line


def echo_fields(echoes: list[dict[str, float]], bytes_per_event: float) -> dict[str, Any]:
    """The echo's mean rate over its two runs (after ours, and after the second
    baselines), both runs, and the bytes per event it wrote."""
    return {
        "echo_per_s": sum(e["echo_per_s"] for e in echoes) / len(echoes),
        "echo_per_s_runs": [round(e["echo_per_s"], 1) for e in echoes],
        "echo_cpu_us_per_event": min(e["echo_cpu_us_per_event"] for e in echoes),
        "written_bytes_per_event": bytes_per_event,
    }


def cpu_per_event(ours: dict[str, Any], raw: dict[str, Any], events: int) -> dict[str, Any]:
    """CPU microseconds per event of the broker, of the ingest processes and of the
    netting process while the pipeline ran (a 'worker all' process does both: it is
    counted as ingest, and netting is then reported as null)."""
    per = dict.fromkeys(("ingest", "netting"), 0.0)
    for role, cpu in zip(ours["worker_roles"], ours["worker_cpu_s"], strict=True):
        per["netting" if role == "netting" else "ingest"] += cpu
    apart = "netting" in ours["worker_roles"]
    return {
        "cpu_us_per_event": {
            "broker": round(ours["broker_cpu_s"] / events * 1e6, 2),
            "ingest": round(per["ingest"] / events * 1e6, 2),
            "netting": round(per["netting"] / events * 1e6, 2) if apart else None,
            "echo": round(ours["echo_cpu_us_per_event"], 2),
        },
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="clearing-e2e-"))
    try:
        line = result_line(args, run(args, tmp))
    except BaseException:
        log(f"failed; logs kept in {tmp}")
        raise
    if args.keep:
        log(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(line))
    return line


if __name__ == "__main__":
    main()
