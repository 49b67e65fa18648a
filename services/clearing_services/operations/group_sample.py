"""One look at consumer groups (state, members, committed offsets, assignment),
taken in a child process of its own.

Why a child: the state and the assignment come from DescribeConsumerGroups, a
request sent to the group's coordinator, and librdkafka (2.16) aborts the whole
process when the coordinator's connection drops while one is under way (a
use-after-free in ``rd_kafka_admin_coord_request``'s error path:
``rd_kafka_enq_once_del_source_return: Assertion `eonce->refcnt > 0' failed``;
librdkafka PR #5397, open). A broker's death is when an operator most needs lag,
and a worker's health probe must never take the worker with it (the three-node
chaos run lost a worker so). The child dies instead; that sample is reported as
not measured, and the next one starts a new child. The child answers one JSON
request per line on stdin and ends when stdin closes, so it never outlives its
parent, killed or not.
"""

from __future__ import annotations

import contextlib
import json
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from confluent_kafka import ConsumerGroupState, KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from clearing_core.errors import ClearingError
from clearing_services.kafka.clients import admin_client
from clearing_services.kafka.groups import committed_offsets, partitions_in

REQUEST_TIMEOUT_SECONDS = 15.0
ANSWER_SECONDS_MAX = 4 * REQUEST_TIMEOUT_SECONDS  # a describe, a metadata read, the offsets
CHILD_STOP_SECONDS = 5.0
_ACTIVE_STATES = {"STABLE", "PREPARING_REBALANCING", "COMPLETING_REBALANCING", "RECONCILING"}

TP = tuple[str, int]


class LagError(ClearingError):
    """Consumer lag could not be read."""

    reason_code = "LAG_UNAVAILABLE"


class GroupNotFoundError(LagError):
    reason_code = "GROUP_NOT_FOUND"


@dataclass(frozen=True)
class GroupSample:
    """One look at one group: state, members, committed offsets and assignment."""

    group: str
    state: str
    members: int
    committed: dict[TP, int | None]  # None: assigned, never committed

    @property
    def active(self) -> bool:
        return self.state in _ACTIVE_STATES or self.members > 0

    def encoded(self) -> dict[str, object]:
        committed = [[t, p, o] for (t, p), o in sorted(self.committed.items())]
        return {"group": self.group, "state": self.state, "members": self.members,
                "committed": committed}  # fmt: skip

    @classmethod
    def decoded(cls, data: dict[str, object]) -> GroupSample:
        rows = data["committed"]
        assert isinstance(rows, list)
        committed = {(str(t), int(p)): None if o is None else int(o) for t, p, o in rows}
        return cls(str(data["group"]), str(data["state"]), int(str(data["members"])), committed)


def _state_name(state: object) -> str:
    if isinstance(state, ConsumerGroupState):
        return state.name
    return str(state or "UNKNOWN").upper()


def lag_error(what: str, exc: Exception) -> LagError:
    error = exc.args[0] if exc.args else exc
    message = error.str() if isinstance(error, KafkaError) else str(error)
    return LagError(f"{what}: {message}")


def sample_groups(
    admin: AdminClient, bootstrap: str, groups: Sequence[str], *, require: bool = False
) -> list[GroupSample]:
    """State, members and committed offsets of each group, in this process. A group
    that does not exist (DEAD, nothing committed) is left out, or raises when
    ``require``. Workers and ``clearing lag`` go through ``GroupProbe`` instead."""
    if not groups:
        return []
    try:
        described = admin.describe_consumer_groups(
            list(groups), request_timeout=REQUEST_TIMEOUT_SECONDS
        )
    except KafkaException as exc:
        raise lag_error("describing consumer groups", exc) from exc
    out, partitions = [], None
    for group in groups:
        try:
            description = described[group].result()
            state, members = _state_name(description.state), list(description.members)
        except KafkaException as exc:  # e.g. a share or streams group: not ours to judge
            if require:
                raise lag_error(f"describing consumer group {group!r}", exc) from exc
            continue
        committed: dict[TP, int | None] = {}
        for member in members:
            assignment = member.assignment.topic_partitions if member.assignment else []
            for tp in assignment:
                committed[(tp.topic, tp.partition)] = None
        try:  # not the admin client's list_consumer_group_offsets: committed_offsets says why
            partitions = partitions if partitions is not None else partitions_in(admin)
            offsets = committed_offsets(bootstrap, group, partitions, REQUEST_TIMEOUT_SECONDS)
        except KafkaException as exc:
            raise lag_error(f"committed offsets of group {group!r}", exc) from exc
        committed.update((tp, offset) for tp, offset in offsets.items() if offset >= 0)
        if state == "DEAD" and not committed:
            if require:
                raise GroupNotFoundError(f"consumer group {group!r} not found")
            continue
        out.append(GroupSample(group, state, len(members), committed))
    return out


class GroupProbe:
    """``sample_groups`` in a child process, started at the first sample and again
    after one dies."""

    def __init__(self, bootstrap: str, answer_seconds_max: float = ANSWER_SECONDS_MAX) -> None:
        self.bootstrap = bootstrap
        self.answer_seconds_max = answer_seconds_max
        self._child: subprocess.Popen[str] | None = None

    def sample(self, groups: Sequence[str], *, require: bool = False) -> list[GroupSample]:
        if not groups:
            return []
        child = self._started()
        assert child.stdin is not None
        assert child.stdout is not None
        try:
            child.stdin.write(json.dumps({"groups": list(groups), "require": require}) + "\n")
            child.stdin.flush()
            ready, _, _ = select.select([child.stdout], [], [], self.answer_seconds_max)
            line = child.stdout.readline() if ready else ""
        except (BrokenPipeError, OSError):
            line = ""
        if not line:  # dead or hung: either way not worth a polite stop
            self.close(stop_seconds=0.0)
            raise LagError("the consumer groups were not described this time: the probe "
                           "process gave no answer (a broker lost mid-request; librdkafka "
                           "PR #5397); the next sample starts a new one")  # fmt: skip
        answer = json.loads(line)
        if "error" in answer:
            kind = GroupNotFoundError if answer.get("not_found") else LagError
            raise kind(str(answer["error"]))
        return [GroupSample.decoded(s) for s in answer["samples"]]

    @property
    def child_pid(self) -> int | None:
        """The child's process id while one runs."""
        return self._child.pid if self._child is not None else None

    def _started(self) -> subprocess.Popen[str]:
        if self._child is None or self._child.poll() is not None:
            self._child = subprocess.Popen(
                [sys.executable, "-m", __name__, self.bootstrap], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
        return self._child

    def close(self, stop_seconds: float = CHILD_STOP_SECONDS) -> None:
        """End the child: stdin closed, then killed if it lingers ``stop_seconds``."""
        child, self._child = self._child, None
        if child is None:
            return
        if child.stdin is not None:
            with contextlib.suppress(OSError):  # a dead child's pipe refuses the flush
                child.stdin.close()
        try:
            child.wait(stop_seconds)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()


def _answer(bootstrap: str, request: dict[str, object]) -> dict[str, object]:
    """One request's answer, asked by a new admin client: one kept from before a
    failover goes on asking with what it knew (a group's describe refused for
    minutes after its coordinator moved, in the three-node test)."""
    groups = request["groups"]
    assert isinstance(groups, list)
    admin = admin_client(bootstrap)
    try:
        samples = sample_groups(admin, bootstrap, groups, require=bool(request["require"]))
    except GroupNotFoundError as exc:
        return {"error": str(exc), "not_found": True}
    except LagError as exc:
        return {"error": str(exc)}
    except KafkaException as exc:
        return {"error": str(lag_error("sampling consumer groups", exc))}
    return {"samples": [s.encoded() for s in samples]}


def main(argv: Sequence[str] | None = None) -> int:
    """The child: one answer per request line, until stdin closes."""
    (bootstrap,) = argv if argv is not None else sys.argv[1:]
    for line in sys.stdin:
        started = time.monotonic()
        answer = _answer(bootstrap, json.loads(line))
        answer["seconds"] = round(time.monotonic() - started, 3)
        print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
