"""Where the worker's time goes: py-spy's raw (collapsed) stacks grouped into areas.

Each sample is one stack, root first. An area "claims" a sample when one of its
frames is anywhere on the stack; the first area in ``CLAIMS`` order wins (debug
logging first, then the netting thread, which claims everything under it, then
the obligation sends, which claim the Faust and aiokafka calls they make, the
seen-id table, the codec, which claims fastavro, ...). A sample no area claims
goes by its deepest library frame (aiokafka, Faust/mode, asyncio). Used by
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


_SEND_FUNCS = {"ProducerBuffer._send_pending", "Topic.publish_message", "Channel._send_now",
               "Topic._on_published", "Topic.send", "Producer.send", "FutureMessage.__init__",
               "ProducerBuffer.wait_until_ebb", "ProducerBuffer.put"}  # fmt: skip


def _in(*parts: str) -> Callable[[Frame], bool]:
    return lambda frame: any(p in frame[1] for p in parts)


def _fn(file: str, *funcs: str) -> Callable[[Frame], bool]:
    return lambda frame: file in frame[1] and frame[0].rsplit(".", 1)[-1] in funcs


SEND = "obligation sends (topic.send: Faust buffer, futures, aiokafka producer)"
# Checked before the claims: logging anywhere on the stack (faust.Worker sets the root
# logger to DEBUG for its spinner, so every debug call in aiokafka/Faust builds a record).
OVERRIDES: list[tuple[str, Callable[[Frame], bool]]] = [
    ("debug log records (root logger at DEBUG)", _in("logging/__init__.py")),
]
CLAIMS: list[tuple[str, Callable[[Frame], bool]]] = [
    ("netting loop (thread: consume, decode, ledger, close)", _in("netting_worker.py")),
    ("other threads (refdata, lag, watchdog, scheduler)",
     _in("refdata_io.py", "watchdog.py", "scheduler.py", "batch_index.py", "lag.py")),
    (SEND, _fn("clearing_services/app.py", "_send_all")),
    (SEND, lambda f: f[0] in _SEND_FUNCS and "faust/" in f[1]),
    (SEND, _in("aiokafka/producer/")),
    ("seen-id table (reads, writes, changelog)", _in("faust/tables/", "faust/stores/")),
    ("Faust consumer + stream machinery (fetch loop, take_events, ack, commit)",
     _in("faust/transport/consumer.py", "faust/transport/conductor.py", "faust/streams.py")),
    ("our decode (codec + fastavro)",
     _fn("clearing_core/codec.py", "decode", "_plan", "decode_as", "writer_version")),
    ("our encode (codec + fastavro)", _fn("clearing_core/codec.py", "encode")),
    ("validation (validate_event, identity, key, digest)",
     lambda f: _in("clearing_core/validation.py", "clearing_core/identity.py",
                   "clearing_core/input_checks.py")(f)
     or _fn("clearing_core/ingest.py", "body_digest", "currency_hint")(f)),
    ("pricing + obligation record",
     lambda f: _in("clearing_core/pricing.py", "clearing_core/money.py", "clearing_core/ids.py")(f)
     or _fn("clearing_core/ingest.py", "obligation_record", "seen_entry")(f)),
    ("event -> RawEvent, batching (our adapter)",
     _fn("clearing_services/app.py", "_raw", "_distinct", "_by_partition")),
    ("metrics (prometheus_client)", _in("prometheus_client/", "clearing_services/metrics.py")),
]  # fmt: skip
FALLBACK: list[tuple[str, Callable[[Frame], bool]]] = [
    ("ingest loop (process_batch, _check, agent body)",
     _in("clearing_core/ingest.py", "clearing_services/app.py")),
    ("aiokafka fetch + parse", _in("aiokafka/consumer/", "aiokafka/record/")),
    ("aiokafka client/conn", _in("aiokafka/")),
    ("Faust/mode event machinery", _in("faust/", "mode/")),
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
            "netting_worker.py" in file for _, file in stack
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
