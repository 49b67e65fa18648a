"""Codec throughput: this project's single-object codec against plain fastavro
schemaless calls on the same records, in the same run.

Prints progress to stderr and, as the last line of stdout, one JSON object with
records/s for both and their ratios (1.0 = as fast as bare fastavro; the codec
adds the header, the fingerprint lookup and the checks).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastavro import schemaless_reader, schemaless_writer

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.encoding.schemas import HEADER_BYTES, SchemaCatalog


def _records(count: int) -> list[tuple[str, dict[str, Any]]]:
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    out: list[tuple[str, dict[str, Any]]] = []
    for i in range(count):
        t = t0 + timedelta(minutes=15 * (i % 5000))
        kind = i % 3
        if kind == 0:
            out.append(("MeterReading", {
                "event_id": f"mtr-{i:012d}", "reporter_id": f"SOLAR-{i % 400:04d}",
                "contract_id": f"PPA-{i % 900:05d}", "meter_id": f"M-{i % 2000:05d}",
                "interval_start": t, "interval_end": t + timedelta(minutes=15),
                "energy_wh": 1_000_000 + i, "reading_quality": "ACTUAL",
                "reported_at": t + timedelta(minutes=16),
            }))  # fmt: skip
        elif kind == 1:
            out.append(("ComputeUsage", {
                "event_id": f"cmp-{i:012d}", "reporter_id": f"GPU-{i % 50:03d}",
                "provider_id": f"GPU-{i % 50:03d}", "customer_id": f"AILAB-{i % 700:04d}",
                "price_book_id": f"PB-{i % 50:03d}", "sku": "output_token",
                "quantity": 10_000 + i, "model": "llm-70b", "usage_start": t,
                "usage_end": t + timedelta(seconds=60), "reported_at": t,
            }))  # fmt: skip
        else:
            out.append(("Payment", {
                "event_id": f"pay-{i:012d}", "reporter_id": f"DC-{i % 300:04d}",
                "payer_id": f"DC-{i % 300:04d}", "payee_id": f"EPC-{i % 40:03d}",
                "kind": "OM_FEE", "currency": "CNH", "amount_minor": 300_000 + i,
                "reference": f"INV-{i}", "value_date": date(2026, 11, 30), "reported_at": t,
            }))  # fmt: skip
    return out


def _best_rate(count: int, run: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return count / best


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=150_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    catalog = SchemaCatalog.load()
    codec = SingleObjectCodec(catalog)
    records = _records(args.records)
    parsed = {n: catalog.current(n).parsed for n in ("MeterReading", "ComputeUsage", "Payment")}
    typed = [(parsed[name], record) for name, record in records]

    def fastavro_encode() -> list[bytes]:
        out = []
        for schema, record in typed:
            buffer = io.BytesIO()
            schemaless_writer(buffer, schema, record)
            out.append(buffer.getvalue())
        return out

    plain = fastavro_encode()
    encoded = [codec.encode(name, record) for name, record in records]
    assert [e[HEADER_BYTES:] for e in encoded] == plain, "codec bodies must equal fastavro's"
    bodies = [(schema, body) for (schema, _), body in zip(typed, plain, strict=True)]

    print(f"records: {len(records)} (meter, compute, payment in turn)", file=sys.stderr)
    rates = {
        "fastavro_encode_records_per_s": _best_rate(len(records), fastavro_encode, args.repeats),
        "codec_encode_records_per_s": _best_rate(
            len(records), lambda: [codec.encode(n, r) for n, r in records], args.repeats
        ),
        "fastavro_decode_records_per_s": _best_rate(
            len(records),
            lambda: [schemaless_reader(io.BytesIO(b), s, None) for s, b in bodies],
            args.repeats,
        ),
        "codec_decode_records_per_s": _best_rate(
            len(records), lambda: [codec.decode(e) for e in encoded], args.repeats
        ),
    }
    for key, value in rates.items():
        print(f"{key:32s} {value:12,.0f}", file=sys.stderr)
    result = {
        "records": len(records),
        **{k: round(v) for k, v in rates.items()},
        "encode_ratio_vs_fastavro": round(
            rates["codec_encode_records_per_s"] / rates["fastavro_encode_records_per_s"], 3
        ),
        "decode_ratio_vs_fastavro": round(
            rates["codec_decode_records_per_s"] / rates["fastavro_decode_records_per_s"], 3
        ),
        "bytes_per_record_mean": round(sum(map(len, encoded)) / len(encoded), 1),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
