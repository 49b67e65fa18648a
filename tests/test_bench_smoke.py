"""The end-to-end bench, run end to end on a small load (about 80 s). Its scripts are
outside mypy and nothing else runs them, so a break (a refactor once handed
``subscribe`` a tuple) is found here rather than at the next measurement. Rates
are not judged: 20,000 events say nothing about them; the audit is."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.pipeline import REPO

pytestmark = [pytest.mark.broker, pytest.mark.timeout(900)]
EVENTS = 20_000
FIGURES = ("events_per_s", "raw_consume_per_s", "naive_faust_per_s", "echo_per_s",
           "ratio_vs_raw", "ratio_vs_naive", "ratio_vs_echo", "p99_cycle_close_to_batch_ms",
           "rss_mb_max", "written_bytes_per_event")  # fmt: skip


def test_the_e2e_bench_runs_through_and_its_audit_holds() -> None:
    command = [sys.executable, "bench/e2e.py", "--events", str(EVENTS), "--naive-events", "2000",
               "--big-cycle", str(EVENTS), "--warm-records", "0", "--close-every", "5000",
               "--ingest-workers", "2", "--netting-apart"]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=840)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert all(result[name] > 0 for name in FIGURES), {name: result[name] for name in FIGURES}
    assert result["seen_store"] == "rocksdb"  # the production default
    assert set(result["cpu_us_per_event"]) == {"broker", "ingest", "netting", "echo"}
    assert result["cpu_us_per_event"]["netting"] > 0  # --netting-apart: its own process
    assert result["audit_ok"] is True
    assert result["audit_events_accepted"] == result["audit_events_carried"] == EVENTS
    assert result["audit_repeated"] == result["audit_unlogged"] == 0
    assert result["big_cycle_obligations"] == EVENTS
    assert result["duplicates_in_cycles"] == 0


def test_the_compression_bench_runs_every_codec_over_the_same_records() -> None:
    """bench/compression.py on a small load: each codec carries the same records of
    each stream, and the broker wrote some bytes for each."""
    command = [sys.executable, "bench/compression.py", "--events", "4000", "--batch", "2000",
               "--rounds", "1"]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["events"] == 4000
    codecs = result["codecs"]
    assert set(codecs) == {"none", "lz4", "zstd"}
    for stream in ("events", "obligations", "seen"):
        (count,) = {codecs[c][stream]["records"] for c in codecs}  # the same records each
        assert count > 0, (stream, codecs)
        assert all(codecs[c][stream]["disk_bytes_per_event"] > 0 for c in codecs)
    assert codecs["none"]["events"]["records"] == 4000  # every event sent once


def test_the_offline_prepare_bench_times_the_workers_code() -> None:
    """bench/prepare.py on a small load: the ingest stage's own code, a RocksDB store
    holding ids before, every round timed, and the obligations per event of the mix."""
    command = [sys.executable, "bench/prepare.py", "--events", "4000", "--batch", "2000",
               "--held", "5000", "--rounds", "2"]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["store"] == "rocksdb"
    assert len(result["rounds_us_per_event"]) == 2
    assert all(us > 0 for us in result["rounds_us_per_event"])
    assert 0 < result["obligations_per_event"] < 1  # pre-aggregated


def test_the_seen_store_bench_restores_a_takeover_from_its_checkpoint() -> None:
    """bench/seen.py on a small store: every stored id found and no new one (it asserts
    both), a takeover from the checkpoint and one from the whole log, a day expired."""
    command = [sys.executable, "bench/seen.py", "--ids", "60000", "--days", "3", "--batch",
               "5000", "--lookups", "20000", "--tail-ids", "5000", "--compare-log"]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["stored_ids"] == 60_000
    assert result["lookups_per_s"] > 0
    assert result["takeover_seconds"] > 0
    assert result["takeover_from_log_seconds"] > 0
    assert result["expired_ids"] == 20_000  # the oldest of three days
    assert result["disk_bytes_after_expiry"] < result["disk_bytes_before_expiry"]
