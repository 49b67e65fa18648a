"""Principals, ACLs and client credentials on a secure broker (docs/security.md).

Who may do what is decided here, from the reference data, and nowhere else:

* every active participant is the SCRAM user ``User:<participant_id>``. It may
  write (and describe) the three event topics and read one topic, its own
  statements (``clearing.statements.<participant_id>``), with groups named
  ``participant-<participant_id>...``; nothing else. Which events it may *report*
  is checked at ingest (signed events), not by the broker. Kafka's ACLs name
  topics, never keys, hence a topic per participant rather than a key prefix.
* a participant with the role BANK may also read the settlement batches of its
  own rails and the rails and currencies of the reference data (what it exports
  with), consume with groups named ``bank-<participant_id>...`` and write
  settlement acks. Its rails are the rails of its accounts plus the rails it
  operates (``Rail.operator_bic`` equal to its BIC): an account holder settles
  its own legs there, and the operator of a HUB rail executes every batch of it.
* ``User:clearing-service`` runs the workers: every ``clearing*`` topic and group,
  transactional ids ``clearing-*``, and creating topics.

``provision`` makes the broker match that plan and changes nothing when it
already does: missing SCRAM users are created, missing ACLs added, and ACLs of
these principals that the plan no longer holds (a rail a bank left, a participant
made inactive) removed. ACLs of other principals are never touched.
"""

from __future__ import annotations

import json
import secrets
import ssl
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, cast

from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._acl import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
)
from confluent_kafka.admin._resource import ResourcePatternType, ResourceType
from confluent_kafka.admin._scram import (
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from clearing_core.refdata import ParticipantRole, ReferenceData
from clearing_services.broker.tls import write_private
from clearing_services.kafka.refdata import CURRENCIES_TOPIC, RAILS_TOPIC
from clearing_services.kafka.topics import (
    ACKS_TOPIC,
    EVENT_TOPICS,
    batch_topic,
    participant_statement_topic,
)
from clearing_services.settings import ClientSecurity

SERVICE_USER = "clearing-service"
CLUSTER = "kafka-cluster"
BANK_GROUP_PREFIX = "bank-"
PARTICIPANT_GROUP_PREFIX = "participant-"
BANK_REFDATA_TOPICS = (RAILS_TOPIC, CURRENCIES_TOPIC)
SCRAM_ITERATIONS = 8192
REQUEST_SECONDS = 30.0


def faust_credentials(security: ClientSecurity) -> dict[str, Any]:
    """Keyword arguments for ``faust.App(...)``: none for PLAINTEXT; for SASL_SSL,
    ``broker_credentials`` with SCRAM over TLS trusting ``security.ca_file``."""
    if not security.secure:
        return {}
    import faust

    cafile = str(security.ca_file) if security.ca_file is not None else None
    context = ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH, cafile=cafile)
    credentials = faust.SASLCredentials(
        username=security.username,
        password=security.password,
        mechanism=security.mechanism,
        ssl_context=context,
    )
    return {"broker_credentials": credentials}


def _enum_name(value: object) -> str:
    return value.name if isinstance(value, Enum) else str(value)


@dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW ACL entry for any host: operation on a resource (name, pattern)."""

    # a ResourceType name: TOPIC, GROUP, TRANSACTIONAL_ID, or BROKER, which is librdkafka's
    # name for the Kafka CLUSTER resource (code 4; its one name is "kafka-cluster")
    resource: str
    name: str
    pattern: str  # LITERAL or PREFIXED
    operation: str  # an AclOperation name

    def binding(self, principal: str) -> AclBinding:
        return AclBinding(
            ResourceType[self.resource], self.name, ResourcePatternType[self.pattern],
            principal, "*", AclOperation[self.operation], AclPermissionType.ALLOW,
        )  # fmt: skip

    @classmethod
    def of(cls, binding: AclBinding) -> Grant:
        return cls(
            _enum_name(binding.restype), binding.name,
            _enum_name(binding.resource_pattern_type), _enum_name(binding.operation),
        )  # fmt: skip

    def __str__(self) -> str:
        return f"{self.operation} {self.resource}:{self.pattern}:{self.name}"


@dataclass(frozen=True)
class Principal:
    """A SCRAM user and what it may do."""

    user: str
    role: str  # participant | bank | service | inactive
    rails: tuple[str, ...] = ()
    grants: frozenset[Grant] = field(default_factory=frozenset)

    @property
    def principal(self) -> str:
        return f"User:{self.user}"


def participant_grants(participant_id: str) -> set[Grant]:
    grants = {Grant("BROKER", CLUSTER, "LITERAL", "IDEMPOTENT_WRITE")}
    for spec in EVENT_TOPICS:
        grants.add(Grant("TOPIC", spec.topic, "LITERAL", "WRITE"))
        grants.add(Grant("TOPIC", spec.topic, "LITERAL", "DESCRIBE"))
    own = participant_statement_topic(participant_id)  # its statements, no one else's
    grants |= {Grant("TOPIC", own, "LITERAL", op) for op in ("READ", "DESCRIBE")}
    grants.add(Grant("GROUP", PARTICIPANT_GROUP_PREFIX + participant_id, "PREFIXED", "READ"))
    return grants


def bank_grants(participant_id: str, rails: Iterable[str]) -> set[Grant]:
    grants = {
        Grant("GROUP", BANK_GROUP_PREFIX + participant_id, "PREFIXED", "READ"),
        Grant("TOPIC", ACKS_TOPIC, "LITERAL", "WRITE"),
    }
    for topic in BANK_REFDATA_TOPICS:  # the rails it exports for, in their currencies
        grants |= {Grant("TOPIC", topic, "LITERAL", op) for op in ("READ", "DESCRIBE")}
    for rail in rails:
        grants.add(Grant("TOPIC", batch_topic(rail), "LITERAL", "READ"))
        grants.add(Grant("TOPIC", batch_topic(rail), "LITERAL", "DESCRIBE"))
    return grants


def service_grants() -> set[Grant]:
    topic_ops = ("READ", "WRITE", "CREATE", "DESCRIBE", "DESCRIBE_CONFIGS")
    grants = {Grant("TOPIC", "clearing", "PREFIXED", op) for op in topic_ops}
    grants |= {Grant("GROUP", "clearing", "PREFIXED", op) for op in ("READ", "DESCRIBE")}
    grants |= {
        Grant("TRANSACTIONAL_ID", "clearing-", "PREFIXED", op) for op in ("WRITE", "DESCRIBE")
    }
    grants |= {Grant("BROKER", CLUSTER, "LITERAL", op) for op in ("IDEMPOTENT_WRITE", "CREATE")}
    return grants


def bank_rails(refdata: ReferenceData, participant_id: str) -> tuple[str, ...]:
    """The rails of a bank's accounts, and the rails whose operator BIC is its BIC."""
    participant = refdata.participants[participant_id]
    rails = {a.rail_id for a in participant.accounts}
    if participant.bic is not None:
        rails |= {r.rail_id for r in refdata.rails.values() if r.operator_bic == participant.bic}
    return tuple(sorted(rails))


def plan(refdata: ReferenceData) -> list[Principal]:
    """Every principal the reference data implies, the service's first."""
    out = [Principal(SERVICE_USER, "service", grants=frozenset(service_grants()))]
    for pid, participant in sorted(refdata.participants.items()):
        if not participant.active:
            out.append(Principal(pid, "inactive"))
            continue
        if ParticipantRole.BANK in participant.roles:
            rails = bank_rails(refdata, pid)
            grants = participant_grants(pid) | bank_grants(pid, rails)
            out.append(Principal(pid, "bank", rails, frozenset(grants)))
        else:
            grants = participant_grants(pid)
            out.append(Principal(pid, "participant", grants=frozenset(grants)))
    return out


def load_passwords(path: Path) -> dict[str, str]:
    """User -> password from a credentials file written by ``save_credentials``."""
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return {user: str(entry["password"]) for user, entry in data.get("principals", {}).items()}


def save_credentials(
    path: Path, principals: Sequence[Principal], passwords: Mapping[str, str]
) -> None:
    """The principals' passwords (0600 JSON); what each participant is given."""
    body = {
        "mechanism": "SCRAM-SHA-512",
        "principals": {
            p.user: {
                "principal": p.principal,
                "role": p.role,
                "rails": list(p.rails),
                "password": passwords[p.user],
            }
            for p in principals
            if p.user in passwords
        },
    }
    write_private(path, (json.dumps(body, indent=2, sort_keys=True) + "\n").encode())


@dataclass
class ProvisionReport:
    """What ``provision`` changed; nothing when the broker already matched the plan."""

    users_created: list[str] = field(default_factory=list)
    users_reset: list[str] = field(default_factory=list)
    users_unchanged: list[str] = field(default_factory=list)
    acls_created: list[str] = field(default_factory=list)
    acls_deleted: list[str] = field(default_factory=list)
    acls_unchanged: int = 0

    @property
    def changed(self) -> bool:
        return bool(
            self.users_created or self.users_reset or self.acls_created or self.acls_deleted
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "changed": self.changed, "users_created": self.users_created,
            "users_reset": self.users_reset, "users_unchanged": self.users_unchanged,
            "acls_created": self.acls_created, "acls_deleted": self.acls_deleted,
            "acls_unchanged": self.acls_unchanged,
        }  # fmt: skip


def _scram_users(admin: AdminClient) -> set[str]:
    """Users that have a SCRAM-SHA-512 credential on the cluster."""
    future = cast("Future[dict[str, Any]]", admin.describe_user_scram_credentials())
    described = future.result(REQUEST_SECONDS)
    return {
        user
        for user, info in described.items()
        if any(c.mechanism == ScramMechanism.SCRAM_SHA_512 for c in info.scram_credential_infos)
    }


def _ensure_users(
    admin: AdminClient, principals: Sequence[Principal], passwords: dict[str, str],
    report: ProvisionReport,
) -> None:  # fmt: skip
    """Create missing users; a user the file has no password for gets a new one."""
    existing = _scram_users(admin)
    upserts: list[UserScramCredentialAlteration] = []
    for p in principals:
        if p.role == "inactive":
            continue
        if p.user in existing and p.user in passwords:
            report.users_unchanged.append(p.user)
            continue
        if p.user in existing:  # a password nobody here knows: replace it
            report.users_reset.append(p.user)
            passwords[p.user] = secrets.token_urlsafe(24)
        else:
            report.users_created.append(p.user)
            passwords.setdefault(p.user, secrets.token_urlsafe(24))
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
        upserts.append(UserScramCredentialUpsertion(p.user, info, passwords[p.user].encode()))
    if upserts:
        for future in admin.alter_user_scram_credentials(upserts).values():
            future.result(REQUEST_SECONDS)


def _current_grants(admin: AdminClient, principals: Sequence[Principal]) -> dict[str, set[Grant]]:
    """The ALLOW ACLs for any host that the cluster holds for these principals (the
    kind ``provision`` manages; DENY and host-specific entries are left alone)."""
    wanted = {p.principal for p in principals}
    found: dict[str, set[Grant]] = {name: set() for name in wanted}
    everything = AclBindingFilter(  # None matches any name, principal and host
        ResourceType.ANY, None, ResourcePatternType.ANY, None, None,  # type: ignore[arg-type]
        AclOperation.ANY, AclPermissionType.ANY,
    )  # fmt: skip
    for binding in admin.describe_acls(everything).result(REQUEST_SECONDS):
        managed = binding.permission_type == AclPermissionType.ALLOW and binding.host == "*"
        if managed and binding.principal in wanted:
            found[binding.principal].add(Grant.of(binding))
    return found


def _ensure_acls(
    admin: AdminClient, principals: Sequence[Principal], report: ProvisionReport
) -> None:
    current = _current_grants(admin, principals)
    create: list[AclBinding] = []
    delete: list[AclBindingFilter] = []
    for p in principals:
        have = current[p.principal]
        report.acls_unchanged += len(have & p.grants)
        for grant in sorted(p.grants - have):
            create.append(grant.binding(p.principal))
            report.acls_created.append(f"{p.principal} {grant}")
        for grant in sorted(have - p.grants):
            delete.append(_exact_filter(grant.binding(p.principal)))
            report.acls_deleted.append(f"{p.principal} {grant}")
    if create:
        for future in admin.create_acls(create).values():
            future.result(REQUEST_SECONDS)
    if delete:
        for future in admin.delete_acls(delete).values():
            future.result(REQUEST_SECONDS)


def _exact_filter(b: AclBinding) -> AclBindingFilter:
    return AclBindingFilter(
        b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation,
        b.permission_type,
    )  # fmt: skip


def provision(admin: AdminClient, refdata: ReferenceData, credentials: Path) -> ProvisionReport:
    """SCRAM users and ACLs as ``plan(refdata)`` says; passwords kept in ``credentials``."""
    principals = plan(refdata)
    passwords = load_passwords(credentials)
    report = ProvisionReport()
    _ensure_users(admin, principals, passwords, report)
    if report.users_created or report.users_reset or not credentials.is_file():
        save_credentials(credentials, principals, passwords)
    _ensure_acls(admin, principals, report)
    return report
