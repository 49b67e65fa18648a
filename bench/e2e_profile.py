"""Where the worker's time goes: py-spy's raw (collapsed) stacks grouped into areas.

Each sample is one stack, root first. An area "claims" a sample when one of its
frames is anywhere on the stack; the first area in ``CLAIMS`` order wins (logging
first, then the netting thread, which claims everything under it, then the
ingest transaction, the codec, which claims fastavro, validation, ...). A
sample no area claims goes to the ingest loop or its deepest library frame. Used by
``bench/e2e.py --profile``; standalone: ``python bench/e2e_profile.py PROFILE.txt``
(prints the areas and the functions with the most own samples).
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

Frame = tuple[str, str]  # (function, file)
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _in(*parts: str) -> Callable[[Frame], bool]:
    return lambda frame: any(p in frame[1] for p in parts)


def _fn(file: str, *funcs: str) -> Callable[[Frame], bool]:
    return lambda frame: file in frame[1] and frame[0].rsplit(".", 1)[-1] in funcs


# Checked before the claims: logging anywhere on the stack.
OVERRIDES: list[tuple[str, Callable[[Frame], bool]]] = [
    ("log records", _in("logging/__init__.py")),
]
CLAIMS: list[tuple[str, Callable[[Frame], bool]]] = [
    ("netting loop (thread: consume, decode, ledger, close)",
     _in("clearing_services/netting/worker.py")),
    ("other threads (refdata, lag, watchdog, scheduler)",
     _in("kafka/refdata.py", "watchdog.py", "scheduler.py", "batch_index.py", "lag.py")),
    ("ingest transaction (produce, offsets, commit)",
     _fn("clearing_services/ingest/worker.py", "_transact", "_produce")),
    ("records -> RawEvent",
     lambda f: _fn("clearing_services/ingest/worker.py", "_by_partition")(f)
     or _fn("clearing_services/kafka/clients.py", "record_of")(f)),
    ("fast lane: columnar decode, profiles, kernels, verdicts",
     lambda f: _in("clearing_core/ingest/fast_lane/")(f)
     or _fn("clearing_core/encoding/avro_rows.py", "decode_rows", "pack", "_decode")(f)),
    ("our decode (codec + fastavro)",
     _fn("clearing_core/encoding/codec.py", "decode", "_plan", "_plan_ms", "writer_version")),
    ("our encode (codec, column writer, SeenEvents writer)",
     lambda f: _fn("clearing_core/encoding/codec.py", "encode")(f)
     or _in("clearing_core/encoding/avro_write.py", "clearing_core/encoding/seen_codec.py")(f)),
    ("validation (validate_event)",
     _in("clearing_core/ingest/validate.py", "clearing_core/ingest/checks.py")),
    ("identity, key and body digest",
     lambda f: _in("clearing_core/ingest/identify.py", "clearing_core/ingest/envelope.py")(f)
     or _fn("clearing_core/ingest/records.py", "body_digest")(f)
     or _fn("clearing_core/ingest/decode.py", "currency_hint")(f)),
    ("pricing + obligation record",
     lambda f: _in("clearing_core/ingest/price.py", "clearing_core/money.py",
                   "clearing_core/ids.py")(f)),
    ("pre-aggregation",
     lambda f: _in("clearing_core/ingest/aggregate.py")(f)
     or _fn("clearing_core/ingest/batch.py", "append", "extend", "key_id")(f)),
    ("seen state and SeenEvents records",
     lambda f: _in("clearing_services/ingest/seen_store.py", "rocksdict")(f)
     or _fn("clearing_core/ingest/records.py", "seen_entry")(f)),
    ("metrics (prometheus_client)",
     _in("prometheus_client/", "clearing_services/runtime/metrics.py")),
]  # fmt: skip
FALLBACK: list[tuple[str, Callable[[Frame], bool]]] = [
    ("ingest loop (consume() in C, process_batch, records_of, prepare)",
     _in("clearing_core/ingest/stage.py", "clearing_core/ingest/decode.py",
         "clearing_core/ingest/records.py", "clearing_services/ingest/worker.py")),
    ("Faust/mode (acks agent)", _in("faust/", "mode/", "aiokafka/")),
    ("asyncio event loop", _in("asyncio/", "selectors.py", "uvloop")),
]  # fmt: skip
OTHER = "other"


def parse_frame(text: str) -> Frame:
    match = _FRAME.match(text.strip())
    if match is None:
        return text.strip(), ""
    return match["func"], match["file"]


def read_stacks(path: Path) -> Counter[tuple[Frame, ...]]:
    stacks: Counter[tuple[Frame, ...]] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = tuple(parse_frame(f) for f in stack.split(";"))
        stacks[frames] += int(count)
    return stacks


def classify(stack: tuple[Frame, ...]) -> str:
    for area, matches in OVERRIDES:
        if any(matches(frame) for frame in stack) and not any(
            "clearing_services/netting/worker.py" in file for _, file in stack
        ):
            return area
    for area, matches in CLAIMS:
        if any(matches(frame) for frame in stack):
            return area
    for frame in reversed(stack):
        for area, matches in FALLBACK:
            if matches(frame):
                return area
    return OTHER


def summarise(path: Path) -> dict[str, float]:
    """Share of samples per area, largest first."""
    areas: Counter[str] = Counter()
    for stack, count in read_stacks(path).items():
        areas[classify(stack)] += count
    total = sum(areas.values()) or 1
    return {area: n / total for area, n in areas.most_common()}


def own_time(path: Path, top: int = 25) -> list[tuple[str, float]]:
    """The functions with the most samples at the top of the stack."""
    leaves: Counter[str] = Counter()
    for stack, count in read_stacks(path).items():
        func, file = stack[-1]
        leaves[f"{func} ({file.rsplit('site-packages/', 1)[-1]})"] += count
    total = sum(leaves.values()) or 1
    return [(name, n / total) for name, n in leaves.most_common(top)]


def render(shares: dict[str, float] | list[tuple[str, float]]) -> str:
    rows = shares.items() if isinstance(shares, dict) else shares
    return "\n".join(f"  {100 * share:5.1f}%  {name}" for name, share in rows)


def main() -> None:
    path = Path(sys.argv[1])
    print("areas (share of samples):")
    print(render(summarise(path)))
    print("functions with the most own samples:")
    print(render(own_time(path)))


if __name__ == "__main__":
    main()
