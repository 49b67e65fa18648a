"""Consumer lag: arithmetic, time estimates and Burrow-style statuses. Pure.

Why here: the rules that turn a window of sampled offsets into OK / WARN / STALL /
STOP / REWIND are the part worth testing exhaustively; the Kafka reading that feeds
them lives in ``clearing_services.operations.lag``. Nothing here reads the clock: every
function takes ``now_ms``.

The rules follow LinkedIn Burrow's evaluator (``calculatePartitionStatus``), over a
window of samples of the committed offset rather than of individual commits:

- REWIND: the committed offset went backwards somewhere in the window;
- OK: the lag was zero at some point in the window (the consumer caught up);
- STOP: the offset did not move over the window, lag > 0, and the last commit is
  older than the window (or, without commit times, the group has no members);
- STALL: the offset did not move over the window, lag > 0, but the consumer is
  still committing (or, without commit times, the group has members);
- WARN: the offset moves but the lag never decreased over the window;
- OK otherwise.

A group is ERR if any partition is STOP, STALL or REWIND, WARN if any is WARN,
else OK.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

OK = "OK"
WARN = "WARN"
STALL = "STALL"
STOP = "STOP"
REWIND = "REWIND"
ERR = "ERR"

PARTITION_STATUSES = (OK, WARN, STALL, STOP, REWIND)
GROUP_STATUSES = (OK, WARN, ERR)
_ERROR_STATUSES = frozenset({STALL, STOP, REWIND})


@dataclass(frozen=True)
class OffsetSample:
    """One look at a partition: when, the group's committed offset (None: never
    committed), and the partition's log start and log end (high watermark)."""

    time_ms: int
    committed: int | None
    log_end: int
    log_start: int = 0

    @property
    def lag(self) -> int:
        return partition_lag(self.committed, self.log_start, self.log_end)


# Topics a stream processor's members assign themselves and read with offsets of
# their own, never committed in the group: a table's changelog, Faust's leader topic.
STATE_TOPIC_SUFFIXES = ("-changelog", "-__assignor-__leader")


def judged(topic: str, committed: int | None) -> bool:
    """Whether a partition of a group's assignment says anything about what the group
    consumes. Not a state topic it never committed: Faust restores a table from its
    changelog with offsets of its own, so the group's lag there only grows, and a
    group judged on it would be ERR however well it consumes its input."""
    return committed is not None or not topic.endswith(STATE_TOPIC_SUFFIXES)


def partition_lag(committed: int | None, log_start: int, log_end: int) -> int:
    """Records between the group's position and the log end, never negative.

    Kafka's ``kafka-consumer-groups`` reports ``log_end - committed``; without a
    committed offset the group would start at the log start (``auto.offset.reset``
    earliest, this project's setting), so the lag counts from there."""
    start = log_start if committed is None else committed
    return max(0, log_end - start)


def partition_status(
    samples: Sequence[OffsetSample],
    *,
    active: bool,
    now_ms: int,
    last_commit_ms: int | None = None,
    caught_up: bool = False,
) -> str:
    """The status of one partition over a window of samples, oldest first.

    ``active``: the group has members (they commit, even if they do not progress).
    ``last_commit_ms``: when the current offset was last committed, where known; it
    replaces ``active`` in telling STOP from STALL, as Burrow does with commit times.
    ``caught_up``: nothing consumable lies between the newest committed offset and the
    log end (only transaction markers, which Kafka counts as lag): treated as lag 0.
    """
    if not samples:
        return OK
    committed = [s.committed for s in samples]
    known = [c for c in committed if c is not None]
    if any(later < earlier for earlier, later in itertools.pairwise(known)):
        return REWIND
    lags = [s.lag for s in samples]
    if caught_up or any(lag == 0 for lag in lags):
        return OK
    if len(samples) < 2:
        return OK if active else STOP
    if all(c == committed[0] for c in committed):
        if last_commit_ms is not None:
            span = samples[-1].time_ms - samples[0].time_ms
            return STOP if now_ms - last_commit_ms > span else STALL
        return STALL if active else STOP
    if all(later >= earlier for earlier, later in itertools.pairwise(lags)):
        return WARN
    return OK


def group_status(statuses: Iterable[str]) -> str:
    """ERR if any partition is STOP, STALL or REWIND; WARN if any is WARN; else OK."""
    worst = OK
    for status in statuses:
        if status in _ERROR_STATUSES:
            return ERR
        if status == WARN:
            worst = WARN
    return worst


def lag_seconds_from_record(lag: int, record_time_ms: int | None, now_ms: int) -> float | None:
    """Age of the next unconsumed record: 0 without lag, None when its time is unknown."""
    if lag == 0:
        return 0.0
    if record_time_ms is None or record_time_ms <= 0:
        return None
    return max(0.0, (now_ms - record_time_ms) / 1000.0)


def lag_seconds_interpolated(
    history: Sequence[OffsetSample], committed: int | None, now_ms: int
) -> float | None:
    """How long ago the log end stood at the committed offset, interpolated in a
    sampled history of (log end, time) as kafka-lag-exporter does; None where the
    history does not cover the offset (no extrapolation: it can be far off)."""
    if not history:
        return None
    latest = history[-1]
    position = latest.log_start if committed is None else committed
    if position >= latest.log_end:
        return 0.0
    # the last sample at which the log end had not passed the position, then the next
    for i in range(len(history) - 1, -1, -1):
        if history[i].log_end <= position:
            if i == len(history) - 1:
                return None
            before, after = history[i], history[i + 1]
            if after.log_end <= before.log_end:
                return None
            fraction = (position - before.log_end) / (after.log_end - before.log_end)
            at_ms = before.time_ms + fraction * (after.time_ms - before.time_ms)
            return max(0.0, (now_ms - at_ms) / 1000.0)
    return None


@dataclass
class PartitionWindow:
    """A bounded history of samples of one partition of one group."""

    max_samples: int = 30
    samples: deque[OffsetSample] = field(default_factory=deque)

    def add(self, sample: OffsetSample) -> None:
        self.samples.append(sample)
        while len(self.samples) > max(1, self.max_samples):
            self.samples.popleft()


@dataclass(frozen=True)
class PartitionReport:
    topic: str
    partition: int
    committed_offset: int | None
    log_start_offset: int
    log_end_offset: int
    lag: int
    lag_seconds: float | None
    status: str

    def to_json(self) -> dict[str, object]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "committed_offset": self.committed_offset,
            "log_end_offset": self.log_end_offset,
            "lag": self.lag,
            "lag_seconds": None if self.lag_seconds is None else round(self.lag_seconds, 3),
            "status": self.status,
            "log_start_offset": self.log_start_offset,
            # without a committed offset, the lag counts from the log start
            "lag_from": "committed" if self.committed_offset is not None else "log_start",
        }


@dataclass(frozen=True)
class GroupReport:
    group: str
    state: str
    members: int
    partitions: tuple[PartitionReport, ...]

    @property
    def status(self) -> str:
        return group_status(p.status for p in self.partitions)

    @property
    def total_lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    def to_json(self) -> dict[str, object]:
        return {
            "group": self.group,
            "state": self.state,
            "status": self.status,
            "members": self.members,
            "partitions": [p.to_json() for p in self.partitions],
        }


def evaluate_partition(
    topic: str,
    partition: int,
    window: PartitionWindow,
    *,
    active: bool,
    now_ms: int,
    record_time_ms: int | None = None,
    record_probed: bool = False,
) -> PartitionReport:
    """The report of one partition from its window (newest sample = current numbers).

    ``record_time_ms``: timestamp of the record at the committed offset, where probed
    (<= 0: the record carries no time); ``record_probed`` with None means the probe
    found no data record left to read (only transaction markers, as after every
    transactional commit of the netting loop), so the consumer is caught up: lag
    time 0 and status as for lag 0, while ``lag`` keeps Kafka's count. An
    interpolation in the window's history is preferred for the lag time."""
    if not window.samples:
        raise ValueError(f"{topic}[{partition}]: no samples")
    latest = window.samples[-1]
    lag = latest.lag
    seconds = lag_seconds_interpolated(window.samples, latest.committed, now_ms)
    if seconds is None and record_probed:
        # None: no data record left (only transaction markers); <= 0: a record without time
        seconds = (
            0.0 if record_time_ms is None else lag_seconds_from_record(lag, record_time_ms, now_ms)
        )
    caught_up = record_probed and record_time_ms is None
    if lag == 0 or caught_up:
        seconds = 0.0
    status = partition_status(window.samples, active=active, now_ms=now_ms, caught_up=caught_up)
    return PartitionReport(
        topic=topic,
        partition=partition,
        committed_offset=latest.committed,
        log_start_offset=latest.log_start,
        log_end_offset=latest.log_end,
        lag=lag,
        lag_seconds=seconds,
        status=status,
    )


def report_json(groups: Sequence[GroupReport]) -> dict[str, object]:
    """The ``clearing lag --json`` object."""
    return {"groups": [g.to_json() for g in groups]}
