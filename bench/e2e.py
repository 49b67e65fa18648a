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
   c. this project: ``--ingest-workers`` processes, one ``clearing worker all``
      (ingest loop, netting loop, acks agent) and the rest ``clearing worker
      ingest`` (``--netting-apart``: a ``clearing worker netting`` and that many
      ``clearing worker ingest``), every guarantee on (Kafka transactions, de-duplication by event
      id, invariants per cycle). The bench closes every currency but the
      largest one each ``--close-every`` events committed by the ingest group,
      and all of them at the end. Rate: events from the first obligation's
      timestamp to the last cycle report's; each worker's RSS is sampled each
      second. Then an audit from the log (``clearing_services.operations.audit``): every
      event accepted once and carried by exactly one logged obligation.
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import e2e_profile
import numpy as np
from confluent_kafka import Consumer, KafkaError, KafkaException
from e2e_close import big_cycle
from e2e_support import (
    IngestProgress,
    ProcessSampler,
    bench_refdata,
    combine,
    first_timestamp_ms,
    host_speed,
    log,
    own_broker,
    partition_counts,
    pid_of,
    preload,
    prepare,
    stop,
    wait_ready,
)
from e2e_warm import jit_seconds, warm_broker

from clearing_core.cycle.markers import marker_record
from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.encoding.schemas import SchemaCatalog
from clearing_services.ingest.worker import GROUP as INGEST_GROUP
from clearing_services.kafka.clients import consumer_config, read_topic
from clearing_services.kafka.topics import (
    CYCLES_TOPIC,
    EVENT_TOPIC_NAMES,
    OBLIGATIONS_TOPIC,
)
from clearing_services.netting.scheduler import send_markers
from clearing_services.operations.audit import coverage
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


class Closer:
    """Sends the bench's CycleClose markers and counts them (they share the topic)."""

    def __init__(self, bootstrap: str, codec: SingleObjectCodec, currencies: list[str],
                 big: str, every: int) -> None:  # fmt: skip
        self.bootstrap, self.codec, self.big, self.every = bootstrap, codec, big, every
        self.currencies = currencies
        self.sent = 0
        self.next_at = every
        self.run = f"e2e-{time.time_ns()}"

    def _send(self, currencies: list[str], tag: str) -> list[str]:
        now = datetime.now(UTC)
        markers = [marker_record(f"{self.run}-{c}-{tag}", c, "MANUAL", "bench-e2e", now)
                   for c in currencies]  # fmt: skip
        send_markers(self.bootstrap, self.codec, markers)
        self.sent += len(markers)
        return [m["marker_id"] for m in markers]

    def maybe_close(self, written: int) -> None:
        while written >= self.next_at:
            self._send([c for c in self.currencies if c != self.big], str(self.next_at))
            self.next_at += self.every

    def close_all(self) -> list[str]:
        return self._send(self.currencies, "final")


def start_worker(
    bootstrap: str, state: Path, role: str, worker_id: str, store: str = "memory://"
) -> subprocess.Popen[Any]:
    env = {**os.environ, "KAFKA_BOOTSTRAP": bootstrap, "CLEARING_STORE": store,
           "CLEARING_STATE_DIR": str(state), "CLEARING_WORKER_ID": worker_id,
           "CLEARING_METRICS_PORT": "0"}  # fmt: skip
    state.mkdir(parents=True, exist_ok=True)
    with (state / f"{worker_id}.log").open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "clearing_services.cli", "worker", role, "--log-level", "info"],
            env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip


def start_profiler(pid: int, seconds: int, out: Path) -> subprocess.Popen[Any]:
    spy = Path(sys.executable).with_name("py-spy")
    command = [str(spy), "record", "--pid", str(pid), "--duration", str(seconds),
               "--rate", "100", "--gil", "--full-filenames", "--format", "raw",
               "--output", str(out)]  # fmt: skip
    log(f"profiling the worker for {seconds} s: {out}")
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def wait_ingested(bootstrap: str, processes: list[subprocess.Popen[Any]], closer: Closer,
                  events: int, profile: tuple[int, Path] | None,
                  ) -> subprocess.Popen[Any] | None:  # fmt: skip
    """Close the small currencies as events are ingested, until all of them are."""
    deadline = time.monotonic() + 900 + events / 500
    profiler, last_log = None, 0
    progress = IngestProgress(bootstrap, INGEST_GROUP, EVENT_TOPIC_NAMES)
    while (done := progress.committed()) < events:
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"a worker exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"ingest: {done:,} of {events:,} events in time")
        closer.maybe_close(done)
        if profile is not None and profiler is None and done >= min(50_000, events // 4):
            profiler = start_profiler(processes[0].pid, *profile)
        if done - last_log >= 250_000:
            log(f"pipeline: {done:,} events ingested")
            last_log = done
        time.sleep(0.5)
    closer.maybe_close(done)
    return profiler


def wait_reports(bootstrap: str, codec: SingleObjectCodec, marker_ids: list[str],
                 timeout_seconds: float) -> list[tuple[int, dict[str, Any]]]:  # fmt: skip
    """Every cycle report (with its record timestamp) once the given markers have one."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        records = read_topic(bootstrap, CYCLES_TOPIC, f"bench-e2e-cycles-{time.time_ns()}")
        reports = [(r.timestamp_ms, codec.decode(r.value).record) for r in records]
        if set(marker_ids) <= {r["marker_id"] for _, r in reports}:
            return reports
        if time.monotonic() > deadline:
            raise RuntimeError(f"no cycle reports for {marker_ids} in {timeout_seconds:.0f} s")
        time.sleep(0.5)


def pipeline(bootstrap: str, codec: SingleObjectCodec, currencies: list[str], tmp: Path,
             args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    """This project's worker on the preloaded topics, cycles closed by the bench."""
    closer = Closer(bootstrap, codec, currencies, args.big_currency, args.close_every)
    t_spawn = time.time()
    roles = ["netting" if args.netting_apart else "all"]
    roles += ["ingest"] * (args.ingest_workers - (0 if args.netting_apart else 1))
    processes = [start_worker(bootstrap, tmp / "worker", roles[0], "bench-e2e-1")]
    wait_ready(processes[0], tmp / "worker" / "bench-e2e-1.log")
    processes += [start_worker(bootstrap, tmp / "worker", role, f"bench-e2e-{i + 2}")
                  for i, role in enumerate(roles[1:])]  # fmt: skip
    samplers = [ProcessSampler(p.pid) for p in processes]
    cpu_start = [sampler.sample() for sampler in samplers]  # start-up (imports, kernels) left out
    broker_pid = pid_of(str(tmp / "broker"))
    broker = ProcessSampler(broker_pid) if broker_pid is not None else None
    broker_cpu_start = broker.sample() if broker is not None else 0.0
    jit_start = jit_seconds(broker_pid)
    bench_cpu_seconds = time.process_time()
    profile = (args.profile, args.profile_out) if args.profile else None
    profiler = None
    try:
        profiler = wait_ingested(bootstrap, processes, closer, args.events, profile)
        t_ingested = time.time()
        log(f"pipeline: ingested; closing {', '.join(currencies)}")
        final = closer.close_all()
        reports = wait_reports(bootstrap, codec, final, timeout_seconds=900)
    finally:
        if profiler is not None:
            profiler.wait(timeout=args.profile + 60)
        cpu_before_stop = [s.cpu_seconds - s0 for s, s0 in zip(samplers, cpu_start, strict=True)]
        broker_cpu_seconds = broker.cpu_seconds - broker_cpu_start if broker is not None else -1.0
        jit_end = jit_seconds(broker_pid)
        bench_cpu_seconds = time.process_time() - bench_cpu_seconds
        for process in processes:
            stop(process)
        for sampler in samplers:
            sampler.stop()
    audit = audit_events(bootstrap, codec, args.events)
    t_first_ms = first_timestamp_ms(bootstrap, OBLIGATIONS_TOPIC)
    t_last_ms = max(ts for ts, r in reports if r["marker_id"] in final)
    seconds = (t_last_ms - t_first_ms) / 1000
    return summarise(reports, args.events, seconds) | {
        "rss_mb_max": round(max(sampler.rss_mb_max for sampler in samplers), 1),
        "rss_mb_max_per_worker": [round(sampler.rss_mb_max, 1) for sampler in samplers],
        "worker_roles": roles,
        "ingest_batch_max": load_settings().ingest_batch_max,  # CLEARING_INGEST_BATCH_MAX
        "worker_start_s": round(t_first_ms / 1000 - t_spawn, 1),
        "ingest_s": round(t_ingested - t_first_ms / 1000, 1),
        "final_close_s": round(t_last_ms / 1000 - t_ingested, 1),
        "worker_cpu_s": [round(cpu, 1) for cpu in cpu_before_stop],
        "broker_cpu_s": round(broker_cpu_seconds, 1),
        "broker_jit_s": None if jit_start is None or jit_end is None else jit_end - jit_start,
        "bench_cpu_s": round(bench_cpu_seconds, 1),
        "machine_cpu_us_per_event": round(
            (sum(cpu_before_stop) + broker_cpu_seconds + bench_cpu_seconds) / args.events * 1e6, 2
        ),
        "scheduled_closes": sum(r["marker_id"].startswith("sched-") for _, r in reports),
        **audit,
    }


def audit_events(bootstrap: str, codec: SingleObjectCodec, events: int) -> dict[str, Any]:
    """Correctness of the run from the log alone: every preloaded event accepted once
    and carried by exactly one obligation on clearing.obligations, whose event count
    and digest agree with the events that name it (clearing_services.operations.audit)."""
    t0 = time.perf_counter()
    covered = coverage(bootstrap, codec)
    carried = sum(
        int(covered.obligations[o]["source_event_count"])
        for o in set(covered.obligation_of.values())
    )
    found = {
        "audit_events_accepted": len(covered.obligation_of),
        "audit_events_carried": carried,
        "audit_repeated": len(covered.repeated),
        "audit_unlogged": len(covered.unlogged),
        "audit_miscounted": len(covered.miscounted),
        "audit_obligations": len(set(covered.obligation_of.values())),
    }
    found["audit_ok"] = found["audit_events_accepted"] == found[
        "audit_events_carried"
    ] == events and not (covered.repeated or covered.unlogged or covered.miscounted)
    log(f"audit ({time.perf_counter() - t0:.0f} s): {found}")
    return found


def summarise(reports: list[tuple[int, dict[str, Any]]], events: int,
              seconds: float) -> dict[str, Any]:  # fmt: skip
    cycles = [r for _, r in reports]
    close_ms = np.array([r["timings"]["close_to_batch_ms"] for r in cycles])
    big = max(cycles, key=lambda r: r["obligation_count"])
    return {
        "events_per_s": events / seconds,
        "p99_cycle_close_to_batch_ms": float(np.percentile(close_ms, 99)),
        "pipeline_seconds": seconds,
        # a cycle's count includes obligations deferred by a cap and carried in again
        "obligations_in_cycles": sum(r["obligation_count"] - r["carried_in_count"] for r in cycles),
        "deferred_in_cycles": sum(r["deferred_count"] for r in cycles),
        "duplicates_in_cycles": sum(r["duplicate_count"] for r in cycles),
        "cycles": len(cycles),
        "largest_cycle_obligations": big["obligation_count"],
        "largest_cycle_close_to_batch_ms": big["timings"]["close_to_batch_ms"],
        "largest_cycle_netting_ms": big["timings"]["netting_ms"],
        "largest_cycle_emit_ms": big["timings"]["emit_ms"],
        "median_cycle_close_to_batch_ms": float(np.median(close_ms)),
        "close_ms_all": [float(ms) for ms in close_ms],
        "cycle_list": [
            [r["currency"], r["obligation_count"], round(r["timings"]["close_to_batch_ms"], 1)]
            for r in sorted(cycles, key=lambda r: (r["currency"], r["cycle_seq"]))
        ],
    }


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
        ours = pipeline(bootstrap, codec, sorted(refdata.currencies), tmp, args)
        log(f"pipeline: {ours['events_per_s']:,.0f} events/s")
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
    head["ratio_vs_raw"] = head["events_per_s"] / head["raw_consume_per_s"]
    head["ratio_vs_naive"] = head["events_per_s"] / head["naive_faust_per_s"]
    head["p99_cycle_close_to_batch_ms"] = ours.pop("p99_cycle_close_to_batch_ms")
    head["rss_mb_max"] = ours.pop("rss_mb_max")
    rest = {"events": args.events, "naive_events": args.naive_events, "quick": args.quick,
            "net_debit_caps": args.keep_caps,
            "profiled": bool(args.profile),
            **parts["phases"], **raw, **naive, **ours, **parts["loaded"]}  # fmt: skip
    line = head | rest
    for key, value in line.items():
        if isinstance(value, float):
            line[key] = round(value, 3 if value < 100 else 1)
    return line


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
