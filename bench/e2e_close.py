"""Phase (d) of ``bench/e2e.py``: one cycle of ``--big-cycle`` obligations (1M by
default) closed by a real netting worker.

Why a phase of its own: pre-aggregation shrinks the pipeline's cycles (2M events
give a CNH cycle of a few hundred thousand obligations), so the issue's figure
"cycle close to batch with 1M obligations in the cycle" needs a cycle that big
on purpose. The bench writes N distinct single-event obligations of one currency
(between account holders of that currency, lognormal amounts, a tenth of them
with a priority) straight to ``clearing.obligations``, then the marker, starts
``clearing worker netting`` and waits for the cycle report. Its
``timings.close_to_batch_ms`` runs from reading the marker to the committed
transaction, as for every cycle.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from e2e_support import stop

from clearing_core.cycle.markers import marker_record
from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.refdata import ReferenceData
from clearing_services.kafka.clients import produce_all, producer_config, read_topic
from clearing_services.kafka.topics import CYCLES_TOPIC, OBLIGATIONS_TOPIC
from clearing_services.netting.scheduler import send_markers

CHUNK = 100_000


def big_cycle(
    bootstrap: str, codec: SingleObjectCodec, refdata: ReferenceData, currency: str,
    count: int, worker: Any, seed: int,
) -> dict[str, Any]:  # fmt: skip
    """Write ``count`` obligations and a marker, let a netting worker close them."""
    rng = random.Random(seed)
    holders = sorted(p for p in refdata.participants if refdata.account(p, currency))
    partition = refdata.obligation_partition(currency)  # the plan's, as the workers write
    producer = Producer(producer_config(bootstrap, **{"linger.ms": 50}))
    at = datetime.now(UTC)
    t0 = time.perf_counter()
    for start in range(0, count, CHUNK):
        items = []
        for i in range(start, min(count, start + CHUNK)):
            debtor, creditor = rng.sample(holders, 2)
            record = {
                "obligation_id": f"p:big-{seed}-{i:09d}", "debtor_id": debtor,
                "creditor_id": creditor, "currency": currency,
                "amount_minor": max(1, int(rng.lognormvariate(9, 2))),
                "priority": 1 if rng.random() < 0.1 else 0, "source": "PAYMENT",
                "contract_id": None, "source_event_count": 1, "source_digest": None,
                "event_time": at, "remainder_ppm": 0, "carry_key": None,
            }  # fmt: skip
            items.append((currency.encode(), codec.encode("Obligation", record)))
        produce_all(producer, OBLIGATIONS_TOPIC, items, lambda _t, _k: partition)
    written_seconds = time.perf_counter() - t0
    marker = marker_record(f"big-{seed}-{currency}", currency, "MANUAL", "bench-e2e", at)
    send_markers(bootstrap, codec, [marker], refdata.obligation_partition)
    process = worker()
    try:
        report = _wait_report(bootstrap, codec, marker["marker_id"], timeout_seconds=600)
    finally:
        stop(process)
    timings = report["timings"]
    return {
        "big_cycle_obligations": report["obligation_count"],
        "big_cycle_close_to_batch_ms": round(timings["close_to_batch_ms"], 1),
        "big_cycle_netting_ms": round(timings["netting_ms"], 1),
        "big_cycle_emit_ms": round(timings["emit_ms"], 1),
        "big_cycle_instructions": report["instruction_count"],
        "big_cycle_write_s": round(written_seconds, 1),
    }


def _wait_report(
    bootstrap: str, codec: SingleObjectCodec, marker_id: str, timeout_seconds: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        for record in read_topic(bootstrap, CYCLES_TOPIC, f"bench-big-{time.time_ns()}"):
            report = codec.decode(record.value).record
            if report["marker_id"] == marker_id:
                return dict(report)
        time.sleep(1.0)
    raise RuntimeError(f"no cycle report for {marker_id} in {timeout_seconds:.0f} s")


def state_dir(tmp: Path) -> Path:
    return tmp / "big-cycle"
