"""The secure broker through the real CLI: SASL/SCRAM over TLS, the StandardAuthorizer,
and the ACLs of ``clearing security provision`` (docs/security.md).

One secure broker of this module's own (``clearing broker start --secure``), its
principals provisioned from tests/data/security-refdata.yaml: SOLAR-SEC-01 and
DC-SEC-01 report events, BANK-SEC-A settles on usd-swift, BANK-SEC-B on cnh-cips.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.encoding.schemas import SchemaCatalog
from clearing_core.errors import InputError
from clearing_services.broker.secure import read_env_file
from clearing_services.kafka.clients import consumer_config, producer_config
from clearing_services.kafka.security import faust_credentials
from clearing_services.settings import ClientSecurity, load_client_security, load_settings
from tests.conftest import REPO
from tests.core.exports.test_exports import make_batch
from tests.support.brokers import free_port

CLEARING = [sys.executable, "-m", "clearing_services.cli"]
REFDATA = REPO / "tests" / "data" / "security-refdata.yaml"
METER = "clearing.events.meter"
OWN_RAIL = "clearing.settlement.batches.usd-swift"  # BANK-SEC-A's
OTHER_RAIL = "clearing.settlement.batches.cnh-cips"  # BANK-SEC-B's
BATCHES_HKD = "clearing.settlement.batches.hkd-chats"  # BANK-SEC-B operates it
QUIET = {"log_level": 0}


def _clearing(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLEARING, *args], capture_output=True, text=True, timeout=180, env=env, check=False
    )


@dataclass(frozen=True)
class SecureBroker:
    bootstrap: str
    home: Path
    admin_env: dict[str, str]  # the process environment of the operator
    credentials: Path  # the principals' passwords, written by provisioning
    ca_file: Path

    def security(self, user: str, password: str | None = None) -> ClientSecurity:
        if password is None:
            password = json.loads(self.credentials.read_text())["principals"][user]["password"]
        return ClientSecurity("SASL_SSL", "SCRAM-SHA-512", user, password, self.ca_file)

    def props(self, user: str, password: str | None = None) -> dict[str, str]:
        return self.security(user, password).librdkafka()


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    home = tmp_path_factory.mktemp("secure") / "kafka"
    where = ["--home", str(home), "--port", str(free_port()),
             "--controller-port", str(free_port())]  # fmt: skip
    env = {**os.environ, "CLEARING_BROKER_HEAP_MB": "384"}
    started = _clearing("broker", "start", "--secure", "--json", *where, env=env)
    assert started.returncode == 0, started.stderr
    try:
        status = json.loads(started.stdout)
        admin_env = {**env, **read_env_file(Path(status["credentials"]))}
        broker = SecureBroker(
            status["bootstrap"], home, admin_env, home.parent / "principals.json",
            Path(admin_env["CLEARING_KAFKA_CA_FILE"]),
        )  # fmt: skip
        topics = _clearing("topics", "create", "--rail", "usd-swift", "--rail", "cnh-cips",
                           "--rail", "hkd-chats", "--json", env=admin_env)  # fmt: skip
        assert topics.returncode == 0, topics.stderr
        yield broker
    finally:
        stopped = _clearing("broker", "stop", "--json", *where, env=env)
        assert json.loads(stopped.stdout)["stopped"] is True


@pytest.fixture(scope="module")
def provisioned(secure: SecureBroker) -> dict[str, object]:
    """The first provisioning's JSON report."""
    done = _clearing("security", "provision", "--refdata", str(REFDATA), "--credentials",
                     str(secure.credentials), "--json", env=secure.admin_env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report: dict[str, object] = json.loads(done.stdout)
    return report


def _errors_of(config: dict[str, object], call: str) -> tuple[KafkaException | None, list[str]]:
    """Run a metadata request with ``config``; (its exception, the client's error_cb)."""
    seen: list[str] = []
    client = AdminClient({**config, **QUIET, "error_cb": lambda e: seen.append(str(e))})
    try:
        getattr(client, call)(timeout=5)
    except KafkaException as exc:
        client.poll(1)  # serves error_cb
        return exc, seen
    return None, seen


def _delivery(bootstrap: str, props: dict[str, str], topic: str) -> KafkaError | None:
    """Produce one record as a principal; the delivery error, or None when written."""
    outcome: list[KafkaError | None] = []
    producer = Producer(producer_config(bootstrap, **props, **QUIET))
    producer.produce(topic, b"v", b"k", on_delivery=lambda err, _msg: outcome.append(err))
    assert producer.flush(30) == 0
    return outcome[0]


def _first(
    consumer: Consumer, ignore: tuple[int, ...] = (), timeout_seconds: float = 20.0
) -> tuple[bytes | None, KafkaError | None]:
    """The first record's value or the first error (not in ``ignore``) the consumer reports."""
    deadline = time.monotonic() + timeout_seconds
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None and error.code() in (KafkaError._PARTITION_EOF, *ignore):
                continue
            if error is not None:
                return None, error
            if error is None:
                return message.value(), None
        raise AssertionError("neither a record nor an error in time")
    finally:
        consumer.close()


@pytest.mark.broker
def test_secure_broker_reports_running_through_the_cli(secure: SecureBroker) -> None:
    where = ["--home", str(secure.home), "--port", secure.bootstrap.rsplit(":", 1)[1]]
    status = _clearing("broker", "status", "--json", *where, env=dict(os.environ))
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["state"] == "running"
    properties = read_env_file(secure.home / "server.properties")
    assert properties["authorizer.class.name"].endswith("StandardAuthorizer")
    assert properties["allow.everyone.if.no.acl.found"] == "false"
    for private in ("admin.env", "server.properties", "tls/ca.pem", "tls/broker.pem"):
        assert (secure.home / private).stat().st_mode & 0o777 == 0o600, private


def _broker_log_since(secure: SecureBroker, offset: int) -> str:
    with (secure.home / "logs" / "server.log").open(errors="replace") as fh:
        fh.seek(offset)
        return fh.read()


@pytest.mark.broker
def test_unauthenticated_client_is_refused(secure: SecureBroker) -> None:
    log = secure.home / "logs" / "server.log"
    before = log.stat().st_size
    exc, seen = _errors_of({"bootstrap.servers": secure.bootstrap}, "list_topics")
    assert exc is not None
    assert exc.args[0].code() == KafkaError._TRANSPORT  # the broker hangs up on plain text
    assert "KafkaError{code=_ALL_BROKERS_DOWN" in " ".join(seen)
    assert "(SSL handshake failed)" in _broker_log_since(secure, before)

    before = log.stat().st_size  # TLS without SASL: no principal, so nothing answered
    tls_only = {"security.protocol": "SSL", "ssl.ca.location": str(secure.ca_file)}
    exc, seen = _errors_of({"bootstrap.servers": secure.bootstrap, **tls_only}, "list_topics")
    assert exc is not None
    assert exc.args[0].code() == KafkaError._TRANSPORT
    refused = _broker_log_since(secure, before)  # which one depends on the client's timing
    assert "Failed authentication" in refused or "during SASL handshake" in refused


@pytest.mark.broker
def test_wrong_password_is_refused(secure: SecureBroker) -> None:
    config = {"bootstrap.servers": secure.bootstrap, **secure.props("clearing-admin", "wrong")}
    exc, seen = _errors_of(config, "list_topics")
    assert exc is not None
    assert any("Authentication failed" in e and "invalid credentials" in e for e in seen), seen


@pytest.mark.broker
def test_wrong_password_is_one_line_through_the_cli(secure: SecureBroker) -> None:
    env = {**secure.admin_env, "CLEARING_KAFKA_SASL_PASSWORD": "wrong",
           "CLEARING_BROKER_TIMEOUT_SECONDS": "5"}  # fmt: skip
    done = _clearing("topics", "list", "--json", env=env)
    assert (done.returncode, done.stdout) == (69, ""), done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: the Kafka broker at {secure.bootstrap} refused this client: ")
    assert "Authentication failed" in line


@pytest.mark.broker
def test_participant_writes_only_its_event_topics(
    secure: SecureBroker, provisioned: dict[str, object]
) -> None:
    props = secure.props("SOLAR-SEC-01")
    assert _delivery(secure.bootstrap, props, METER) is None
    refused = _delivery(secure.bootstrap, props, "clearing.obligations")
    assert refused is not None
    assert refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

    reader = Consumer(consumer_config(secure.bootstrap, "clearing-sneak", **props, **QUIET))
    reader.assign([TopicPartition(METER, 0, 0)])  # no group ACL either: skip that refusal
    value, error = _first(reader, ignore=(KafkaError.GROUP_AUTHORIZATION_FAILED,))
    assert value is None
    assert error is not None
    assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


@pytest.mark.broker
def test_bank_reads_only_its_own_rails(
    secure: SecureBroker, provisioned: dict[str, object]
) -> None:
    service = secure.props("clearing-service")
    assert _delivery(secure.bootstrap, service, OWN_RAIL) is None
    assert _delivery(secure.bootstrap, service, OTHER_RAIL) is None
    bank = secure.props("BANK-SEC-A")
    group = f"bank-BANK-SEC-A-{uuid.uuid4().hex[:6]}"

    own = Consumer(consumer_config(secure.bootstrap, group, **bank, **QUIET))
    own.subscribe([OWN_RAIL])
    assert _first(own) == (b"v", None)

    other = Consumer(consumer_config(secure.bootstrap, group, **bank, **QUIET))
    other.subscribe([OTHER_RAIL])
    value, error = _first(other)
    assert value is None
    assert error is not None
    assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def _read_as(
    secure: SecureBroker, user: str, group: str, topic: str
) -> tuple[bytes | None, KafkaError | None]:
    reader = Consumer(consumer_config(secure.bootstrap, group, **secure.props(user), **QUIET))
    reader.subscribe([topic])
    return _first(reader)


STATEMENT = {
    "participant_id": "SOLAR-SEC-01", "currency": "CNH", "iso_currency": "CNY",
    "currency_exponent": 2, "cycle_id": "CNH-00000001", "cycle_seq": 1,
    "closed_at": datetime(2026, 12, 7, 9, tzinfo=UTC), "rail_id": "cnh-cips",
    "obligations_in_count": 1, "obligations_in_minor": 125_000, "obligations_out_count": 0,
    "obligations_out_minor": 0, "net_position_minor": 125_000, "failed_carried_net_minor": 0,
    "deferred_net_minor": 0, "instructions": [{
        "instruction_id": "cnh-cips-CNH-00000001-000001", "batch_id": "cnh-cips-CNH-00000001",
        "rail_id": "cnh-cips", "direction": "CREDIT", "counterparty_id": "CLEARING_HOUSE",
        "amount_minor": 125_000, "end_to_end_id": "cnh-cips-CNH-00000001-000001"}],
}  # fmt: skip


@pytest.mark.broker
def test_a_participant_reads_its_own_statements_and_no_one_elses(
    secure: SecureBroker, provisioned: dict[str, object]
) -> None:
    """Kafka's ACLs name topics, not keys: each participant's statements are a topic of
    its own (clearing.statements.<participant>), the only one it may read."""
    service = secure.props("clearing-service")
    admin = AdminClient({"bootstrap.servers": secure.bootstrap, **service, **QUIET})
    own, other = "clearing.statements.SOLAR-SEC-01", "clearing.statements.DC-SEC-01"
    for future in admin.create_topics([NewTopic(t, 1, 1) for t in (own, other)]).values():
        future.result(30)
    value = SingleObjectCodec(SchemaCatalog.load()).encode("ParticipantStatement", STATEMENT)
    writer = Producer(producer_config(secure.bootstrap, **service, **QUIET))
    for topic in (own, other):
        writer.produce(topic, value, b"cycle/CNH-00000001")
    assert writer.flush(30) == 0
    group = f"participant-SOLAR-SEC-01-{uuid.uuid4().hex[:6]}"
    assert _read_as(secure, "SOLAR-SEC-01", group, own) == (value, None)
    read, error = _read_as(secure, "SOLAR-SEC-01", group, other)
    assert read is None
    assert error is not None
    assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # and through the CLI, as the participant
    password = json.loads(secure.credentials.read_text())["principals"]["SOLAR-SEC-01"]["password"]
    env = {**secure.admin_env, "CLEARING_KAFKA_SASL_USERNAME": "SOLAR-SEC-01",
           "CLEARING_KAFKA_SASL_PASSWORD": password}  # fmt: skip
    mine = _clearing("statement", "--participant", "SOLAR-SEC-01", "--format", "json", env=env)
    assert mine.returncode == 0, mine.stderr
    (listed,) = json.loads(mine.stdout)["statements"]
    assert (listed["net_position_minor"], listed["outstanding_minor"]) == (125_000, 125_000)
    theirs = _clearing("statement", "--participant", "DC-SEC-01", env=env)
    assert theirs.returncode == 2
    assert "may not read clearing.statements.DC-SEC-01" in theirs.stderr


@pytest.mark.broker
def test_a_bank_reads_the_rails_of_the_reference_data_and_not_the_participants(
    secure: SecureBroker, provisioned: dict[str, object]
) -> None:
    """What `clearing export` needs as a bank (the rails' operator BICs), no more: BANK-SEC-B
    operates hkd-chats, and its export names the rail's operator from the reference data."""
    published = _clearing("refdata", "publish", str(REFDATA), env=secure.admin_env)
    assert published.returncode == 0, published.stderr
    group = f"bank-BANK-SEC-B-{uuid.uuid4().hex[:6]}"
    rails, participants = "clearing.refdata.rails", "clearing.refdata.participants"
    assert _read_as(secure, "BANK-SEC-B", group, rails)[1] is None
    value, error = _read_as(secure, "BANK-SEC-B", group, participants)
    assert value is None
    assert error is not None
    assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    batch = make_batch("hkd-chats", "HKD", "HKD", 2, 2, [
        ("DC-SEC-01", "CLEARING_HOUSE", 50_000, "DDDDUS33", None)])  # fmt: skip
    codec = SingleObjectCodec(SchemaCatalog.load())
    writer = Producer(
        producer_config(secure.bootstrap, **secure.props("clearing-service"), **QUIET)
    )
    writer.produce(BATCHES_HKD, codec.encode("SettlementBatch", batch), batch["batch_id"].encode())
    assert writer.flush(30) == 0
    password = json.loads(secure.credentials.read_text())["principals"]["BANK-SEC-B"]["password"]
    env = {**secure.admin_env, "CLEARING_KAFKA_SASL_USERNAME": "BANK-SEC-B",
           "CLEARING_KAFKA_SASL_PASSWORD": password}  # fmt: skip
    exported = _clearing("export", "iso20022", batch["batch_id"], env=env)
    assert exported.returncode == 0, exported.stderr
    assert "<BICFI>BBBBHKHH</BICFI>" in exported.stdout  # the operator, from the rails


@pytest.mark.broker
def test_provisioning_twice_changes_nothing(
    secure: SecureBroker, provisioned: dict[str, object]
) -> None:
    assert provisioned["changed"] is True
    passwords = secure.credentials.read_text()
    assert secure.credentials.stat().st_mode & 0o777 == 0o600
    again = _clearing("security", "provision", "--refdata", str(REFDATA), "--credentials",
                      str(secure.credentials), "--json", env=secure.admin_env)  # fmt: skip
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["changed"] is False
    assert report["users_created"] == report["acls_created"] == report["acls_deleted"] == []
    # service 11; each participant 7 + its statements (read, describe, group) 3; a bank
    # besides: its group and the acks 2, 2 per rail, the rails' and currencies' refdata 4
    assert report["acls_unchanged"] == 11 + (10 + 2 + 2 + 4) + (10 + 2 + 4 + 4) + 10 + 10
    assert secure.credentials.read_text() == passwords


@pytest.mark.broker
def test_service_creates_topics_runs_transactions_and_consumes(
    secure: SecureBroker, provisioned: dict[str, object]
) -> None:
    props = secure.props("clearing-service")
    topic = f"clearing.sectest.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": secure.bootstrap, **props, **QUIET})
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result(30)

    txid = f"clearing-sectest-{uuid.uuid4().hex[:6]}"
    producer = Producer(
        producer_config(secure.bootstrap, **props, **QUIET, **{"transactional.id": txid})
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, b"committed", b"k")
    producer.commit_transaction(30)

    consumer = Consumer(consumer_config(secure.bootstrap, f"clearing-{txid}", **props, **QUIET))
    consumer.subscribe([topic])
    assert _first(consumer) == (b"committed", None)


@pytest.mark.broker
def test_faust_credentials_connect_aiokafka(
    secure: SecureBroker, provisioned: dict[str, object]
) -> None:
    from aiokafka import AIOKafkaProducer
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    kwargs = faust_credentials(secure.security("DC-SEC-01"))
    auth = credentials_to_aiokafka_auth(kwargs["broker_credentials"])
    assert auth["security_protocol"] == "SASL_SSL"

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=secure.bootstrap, **auth)
        await producer.start()
        try:
            await producer.send_and_wait(METER, b"from-faust", key=b"k")
        finally:
            await producer.stop()

    asyncio.run(send())


def test_client_security_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_client_security({}) == ClientSecurity()
    assert load_settings({}).kafka_security.librdkafka() == {}
    with pytest.raises(InputError, match=r"CLEARING_KAFKA_SECURITY_PROTOCOL='SSL' is not"):
        load_client_security({"CLEARING_KAFKA_SECURITY_PROTOCOL": "ssl"})
    with pytest.raises(InputError, match="needs CLEARING_KAFKA_SASL_USERNAME"):
        load_client_security({"CLEARING_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"})
    env = {
        "CLEARING_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "CLEARING_KAFKA_SASL_USERNAME": "SOLAR-01",
        "CLEARING_KAFKA_SASL_PASSWORD": "secret",
    }
    security = load_client_security(env)
    assert "secret" not in repr(security)
    assert security.librdkafka() == {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "SOLAR-01", "sasl.password": "secret",
    }  # fmt: skip
    assert "sasl.username" not in producer_config("b:1")
    for name, value in env.items():  # the clients take the profile of the environment
        monkeypatch.setenv(name, value)
    assert producer_config("b:1")["sasl.username"] == "SOLAR-01"
    assert consumer_config("b:1", "g")["security.protocol"] == "SASL_SSL"
    assert faust_credentials(ClientSecurity()) == {}
