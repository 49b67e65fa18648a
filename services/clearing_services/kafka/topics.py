"""Topic definitions (``infra/topics.yaml``) and their idempotent creation."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewPartitions, NewTopic

from clearing_core.errors import ClearingError, InputError
from clearing_services.kafka.clients import admin_client
from clearing_services.settings import infra_dir

OBLIGATIONS_TOPIC = "clearing.obligations"
DLQ_TOPIC = "clearing.dlq"
REDRIVEN_TOPIC = "clearing.dlq.redriven"
ACKS_TOPIC = "clearing.settlement.acks"
POSITIONS_TOPIC = "clearing.positions"
STATEMENTS_TOPIC = "clearing.statements"
CYCLES_TOPIC = "clearing.cycles"
STATUS_TOPIC = "clearing.settlement.status"


@dataclass(frozen=True)
class EventTopic:
    """Where participants produce one event type, and which field is the key."""

    alias: str
    record_type: str
    topic: str
    key_field: str


EVENT_TOPICS = (
    EventTopic("meter", "MeterReading", "clearing.events.meter", "contract_id"),
    EventTopic("compute", "ComputeUsage", "clearing.events.compute", "provider_id"),
    EventTopic("payment", "Payment", "clearing.events.payment", "payer_id"),
)
EVENT_TOPIC_NAMES = tuple(spec.topic for spec in EVENT_TOPICS)


def event_topic(alias_or_type: str) -> EventTopic:
    """The event topic for ``meter``/``compute``/``payment`` or a record type name."""
    for spec in EVENT_TOPICS:
        if alias_or_type in {spec.alias, spec.record_type}:
            return spec
    names = ", ".join(s.alias for s in EVENT_TOPICS)
    raise InputError(f"unknown event type {alias_or_type!r} (expected one of {names})")


RAIL_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
PARTICIPANT_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
BATCH_TOPIC_PREFIX = "clearing.settlement.batches."
STATEMENT_TEMPLATE = STATEMENTS_TOPIC + ".{participant}"
CREATE_SECONDS_MAX = 30.0
REPLICAS_FOR_TWO_IN_SYNC = 3  # with three replicas, a write waits for two
LEADER_POLL_SECONDS = 0.1  # how often new topics are asked whether they have leaders


@dataclass(frozen=True)
class TopicSpec:
    """One topic: name, partitions, replication and Kafka topic configs."""

    name: str
    partitions: int
    replication_factor: int
    config: Mapping[str, str] = field(default_factory=dict)
    doc: str = ""

    @property
    def compacted(self) -> bool:
        return self.config.get("cleanup.policy", "delete") == "compact"


@dataclass(frozen=True)
class TopicPlan:
    """The fixed topics and the per-rail and per-participant templates, as read from
    the YAML file."""

    topics: tuple[TopicSpec, ...]
    batch_template: TopicSpec
    statement_template: TopicSpec

    def for_rails(self, rails: Iterable[str], participants: Iterable[str] = ()) -> list[TopicSpec]:
        """The fixed topics plus one settlement-batch topic per rail and one statement
        topic per participant."""
        specs = list(self.topics)
        for rail in sorted(set(rails)):
            specs.append(batch_topic_spec(self.batch_template, rail))
        return specs + self.for_participants(participants)

    def for_participants(self, participants: Iterable[str]) -> list[TopicSpec]:
        template = self.statement_template
        return [TopicSpec(participant_statement_topic(p), template.partitions,
                          template.replication_factor, template.config, template.doc)
                for p in sorted(set(participants))]  # fmt: skip

    def get(self, name: str) -> TopicSpec:
        for spec in self.topics:
            if spec.name == name:
                return spec
        raise InputError(f"topic {name!r} is not defined in topics.yaml")


def batch_topic(rail: str) -> str:
    """``clearing.settlement.batches.<rail>``; rail ids are checked to be topic-safe."""
    if not RAIL_ID_PATTERN.match(rail):
        raise InputError(f"rail id {rail!r} is not usable in a topic name")
    return BATCH_TOPIC_PREFIX + rail


def participant_statement_topic(participant_id: str) -> str:
    """``clearing.statements.<participant>``: what the participant's principal may read."""
    if not PARTICIPANT_ID_PATTERN.match(participant_id):
        raise InputError(f"participant id {participant_id!r} is not usable in a topic name")
    return STATEMENTS_TOPIC + "." + participant_id


def batch_topic_spec(template: TopicSpec, rail: str) -> TopicSpec:
    return TopicSpec(
        batch_topic(rail), template.partitions, template.replication_factor, template.config,
        template.doc,
    )  # fmt: skip


def _spec(name: str, raw: Mapping[str, Any], defaults: Mapping[str, Any]) -> TopicSpec:
    partitions = int(raw.get("partitions", defaults.get("partitions", 1)))
    replication = int(raw.get("replication_factor", defaults.get("replication_factor", 1)))
    if partitions < 1 or replication < 1:
        raise InputError(f"topics.yaml: {name}: partitions and replication_factor must be >= 1")
    config = {**defaults.get("config", {}), **raw.get("config", {})}
    return TopicSpec(name, partitions, replication, {k: str(v) for k, v in config.items()},
                     str(raw.get("doc", "")))  # fmt: skip


def load_topic_plan(path: Path | None = None, replication_factor: int | None = None) -> TopicPlan:
    """Read ``infra/topics.yaml``; ``replication_factor`` overrides it (clusters)."""
    path = path or infra_dir() / "topics.yaml"
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read topic definitions {path}: {exc}") from exc
    defaults = dict(raw.get("defaults", {}))
    if replication_factor is not None:
        defaults["replication_factor"] = replication_factor
    topics = tuple(_spec(n, spec or {}, defaults) for n, spec in raw["topics"].items())
    templates = raw.get("templates", {})
    found = {}
    for name in (BATCH_TOPIC_PREFIX + "{rail}", STATEMENT_TEMPLATE):
        if templates.get(name) is None:
            raise InputError(f"{path}: the template {name} is missing")
        found[name] = _spec(name, templates[name], defaults)
    return TopicPlan(topics, *found.values())


@dataclass(frozen=True)
class CreateResult:
    """Per topic: ``created`` or ``exists``."""

    outcome: dict[str, str]

    @property
    def created(self) -> list[str]:
        return sorted(n for n, o in self.outcome.items() if o == "created")


def fitted(spec: TopicSpec, brokers: int) -> TopicSpec:
    """``spec`` as a cluster of ``brokers`` holds it: ``min(factor, brokers)`` replicas
    (topics.yaml asks for 3; one local node gets 1); with three, a write needs two
    in-sync replicas; never an unclean leader election (it loses acknowledged
    records). A topic's own config wins."""
    factor = max(1, min(spec.replication_factor, brokers))
    config = {"unclean.leader.election.enable": "false", **spec.config}
    if factor >= REPLICAS_FOR_TWO_IN_SYNC:
        config.setdefault("min.insync.replicas", "2")
    return replace(spec, replication_factor=factor, config=config)


def create_topics(
    admin: AdminClient, specs: Iterable[TopicSpec], timeout_seconds: float = CREATE_SECONDS_MAX
) -> CreateResult:
    """Create every missing topic, fitted to the cluster's size; an existing one is
    left as it is, and reported when its replication is not the plan's (a topic made
    on one node before the cluster grew: reassign its partitions)."""
    metadata = admin.list_topics(timeout=timeout_seconds)
    specs = [fitted(s, len(metadata.brokers)) for s in specs]
    existing = metadata.topics
    outcome = {s.name: _existing_outcome(s, existing[s.name]) for s in specs if s.name in existing}
    missing = [s for s in specs if s.name not in existing]
    if missing:
        new = [
            NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication_factor,
                     config=dict(s.config))
            for s in missing
        ]  # fmt: skip
        futures = admin.create_topics(
            new, operation_timeout=timeout_seconds, request_timeout=timeout_seconds
        )
        for name, future in futures.items():
            try:
                future.result(timeout=timeout_seconds)
                outcome[name] = "created"
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                if (
                    isinstance(error, KafkaError)
                    and error.code() == KafkaError.TOPIC_ALREADY_EXISTS
                ):
                    outcome[name] = "exists"  # created concurrently by another process
                else:
                    raise ClearingError(f"creating topic {name} failed: {exc}") from exc
        _wait_for_leaders(admin, [s.name for s in missing], timeout_seconds)
    return CreateResult(outcome)


def ensure_partitions(admin: AdminClient, topic: str, count: int,
                      timeout_seconds: float = CREATE_SECONDS_MAX) -> int:  # fmt: skip
    """Grow ``topic`` to at least ``count`` partitions (never shrink: Kafka cannot); its
    partition count after. Only for a topic whose partitions are planned, never
    hashed: growing a keyed topic would move keys (``clearing.obligations``, where each
    currency names its own partition, is the one). A missing topic is left to
    ``create_topics``: 0."""
    found = admin.list_topics(topic, timeout=timeout_seconds).topics.get(topic)
    if found is None or found.error is not None:
        return 0
    if len(found.partitions) >= count:
        return len(found.partitions)
    (future,) = admin.create_partitions(
        [NewPartitions(topic, count)], request_timeout=timeout_seconds
    ).values()
    try:
        future.result(timeout=timeout_seconds)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        if not (isinstance(error, KafkaError) and error.code() == KafkaError.INVALID_PARTITIONS):
            raise ClearingError(f"growing {topic} to {count} partitions failed: {exc}") from exc
    _wait_for_leaders(admin, [topic], timeout_seconds)  # grown meanwhile by another: fine
    return count


def topic_ids(admin: AdminClient, names: Sequence[str], timeout_seconds: float) -> dict[str, str]:
    """Each topic's id (a topic deleted and made again under its name has a new one):
    what tells state saved against a topic from state of an older topic of that name."""
    futures = admin.describe_topics(TopicCollection(list(names)), request_timeout=timeout_seconds)
    return {name: str(future.result().topic_id) for name, future in futures.items()}


def _existing_outcome(spec: TopicSpec, metadata: Any) -> str:
    """``exists``, or how its replication differs from the plan's."""
    factors = {len(p.replicas) for p in metadata.partitions.values()}
    if factors and factors != {spec.replication_factor}:
        found = "/".join(str(f) for f in sorted(factors))
        return f"exists, replication factor {found} (plan: {spec.replication_factor})"
    return "exists"


def _wait_for_leaders(admin: AdminClient, names: list[str], timeout_seconds: float) -> None:
    """New topics are usable once every partition has a leader in the metadata."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        topics = admin.list_topics(timeout=timeout_seconds).topics
        ready = all(
            name in topics and topics[name].partitions
            and all(p.leader >= 0 for p in topics[name].partitions.values())
            for name in names
        )  # fmt: skip
        if ready:
            return
        if time.monotonic() > deadline:
            raise ClearingError(f"new topics have no leader after {timeout_seconds:.0f} s: {names}")
        time.sleep(LEADER_POLL_SECONDS)


class ParticipantTopics:
    """The participants' statement topics this process knows exist; the missing ones
    of a write are created first (a participant added to the reference data after
    the worker started has none yet). One per process, seeded with the participants
    whose topics the process created at its start: an admin round trip on the path of
    a close or an acknowledgement only for a participant added since."""

    def __init__(
        self, bootstrap: str, plan: TopicPlan | None = None, known: Iterable[str] = ()
    ) -> None:
        self._bootstrap = bootstrap
        self._plan = plan or load_topic_plan()
        self._known: set[str] = set(known)

    def ensure(self, participants: Iterable[str]) -> None:
        missing = set(participants) - self._known
        if missing:
            create_topics(admin_client(self._bootstrap), self._plan.for_participants(missing))
            self._known |= missing
