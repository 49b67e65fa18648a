"""Phase (c) of ``bench/e2e.py``: this project's workers on the preloaded topics.

``--ingest-workers`` processes (one ``clearing worker all``, or with ``--netting-apart``
a ``clearing worker netting`` and that many ``clearing worker ingest``), cycles closed by
the bench (``Closer``), each worker's RSS and CPU sampled, then an audit from the log
(``clearing_services.operations.audit``) and the figures of every cycle report.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from e2e_support import (
    IngestProgress,
    ProcessSampler,
    check_progress,
    first_timestamp_ms,
    log,
    pid_of,
    stop,
    wait_ready,
)
from e2e_warm import jit_seconds

from clearing_core.cycle.markers import marker_record
from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.refdata import ReferenceData
from clearing_services.ingest.worker import GROUP as INGEST_GROUP
from clearing_services.kafka.clients import read_topic
from clearing_services.kafka.topics import CYCLES_TOPIC, EVENT_TOPIC_NAMES, OBLIGATIONS_TOPIC
from clearing_services.netting.scheduler import send_markers
from clearing_services.operations.audit import coverage
from clearing_services.settings import load_settings

REPO = Path(__file__).resolve().parent.parent


class Closer:
    """Sends the bench's CycleClose markers and counts them (they share the topic)."""

    def __init__(self, bootstrap: str, codec: SingleObjectCodec, refdata: ReferenceData,
                 big: str, every: int) -> None:  # fmt: skip
        self.bootstrap, self.codec, self.big, self.every = bootstrap, codec, big, every
        self.currencies = sorted(refdata.currencies)
        self.partition_of = refdata.obligation_partition
        self.sent = 0
        self.next_at = every
        self.run = f"e2e-{time.time_ns()}"

    def _send(self, currencies: list[str], tag: str) -> list[str]:
        now = datetime.now(UTC)
        markers = [marker_record(f"{self.run}-{c}-{tag}", c, "MANUAL", "bench-e2e", now)
                   for c in currencies]  # fmt: skip
        send_markers(self.bootstrap, self.codec, markers, self.partition_of)
        self.sent += len(markers)
        return [m["marker_id"] for m in markers]

    def maybe_close(self, written: int) -> None:
        while written >= self.next_at:
            self._send([c for c in self.currencies if c != self.big], str(self.next_at))
            self.next_at += self.every

    def close_all(self) -> list[str]:
        return self._send(self.currencies, "final")


# the production default first (settings.store_url); memory for comparison
SEEN_STORES = {"rocksdb": "rocksdb://", "memory": "memory://"}


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
        check_progress(processes, "ingest", done, events, deadline)
        closer.maybe_close(done)
        if profile is not None and profiler is None and done >= min(50_000, events // 4):
            # the last process ingests (with --netting-apart the first one only nets)
            profiler = start_profiler(processes[-1].pid, *profile)
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


def pipeline(bootstrap: str, codec: SingleObjectCodec, refdata: ReferenceData, tmp: Path,
             args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    """This project's worker on the preloaded topics, cycles closed by the bench."""
    closer = Closer(bootstrap, codec, refdata, args.big_currency, args.close_every)
    t_spawn = time.time()
    roles = ["netting" if args.netting_apart else "all"]
    roles += ["ingest"] * (args.ingest_workers - (0 if args.netting_apart else 1))
    store = SEEN_STORES[args.seen_store]
    processes = [start_worker(bootstrap, tmp / "worker", roles[0], "bench-e2e-1", store)]
    wait_ready(processes[0], tmp / "worker" / "bench-e2e-1.log")
    processes += [start_worker(bootstrap, tmp / "worker", role, f"bench-e2e-{i + 2}", store)
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
        log(f"pipeline: ingested; closing {', '.join(closer.currencies)}")
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
