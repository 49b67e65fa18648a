"""A single combined KRaft node (broker + controller) on loopback, run from jars.

Why this shape: one JVM, no ZooKeeper, a heap sized for a 2-core machine, data
and logs in one home folder, and a pid file that records what was started so
``status`` tells the truth and ``stop`` leaves nothing behind. Every process is
tagged with ``-Dclearing.tag=...`` so CI can find strays of its own checkout.
"""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from clearing_services.broker.distribution import BrokerUnavailableError, KafkaDistribution
from clearing_services.broker.health import ClusterInfo, port_open, probe, wait_until_healthy
from clearing_services.broker.secure import (
    admin_client_properties,
    admin_password,
    is_secure_home,
    scram_format_argument,
    secure_properties,
    tls_files,
    write_credentials,
)
from clearing_services.broker.tls import ensure_tls, write_private
from clearing_services.pids import recorded_pid, terminate

START_SECONDS_MAX = 90.0
STOP_SECONDS_MAX = 30.0
FORMAT_SECONDS_MAX = 120  # kafka-storage format: a JVM start and one write
# How often stop() looks whether the broker has exited: after SIGTERM (a controlled
# shutdown takes seconds) and after SIGKILL (gone at once).


@dataclass(frozen=True)
class BrokerConfig:
    """Where and how the local node runs."""

    home: Path
    host: str = "127.0.0.1"
    port: int = 9092
    controller_port: int = 9093
    heap_mb: int = 768
    tag: str = "clearing"
    log4j_config: Path | None = None
    overrides: Mapping[str, str] = field(default_factory=dict)
    secure: bool = False  # SASL_SSL + StandardAuthorizer (broker/secure.py)
    node_id: int = 1
    voters: str | None = None  # controller.quorum.voters of a cluster (broker/cluster.py)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class BrokerStatus:
    """What ``clearing broker status`` reports."""

    state: str  # running | stopped | unhealthy
    bootstrap: str
    pid: int | None
    home: str
    log_file: str
    cluster: ClusterInfo | None = None
    detail: str = ""

    @property
    def running(self) -> bool:
        return self.state == "running"


def server_properties(
    config: BrokerConfig, security: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The broker's configuration: small, single-replica, no auto-created topics;
    ``security`` (the secure mode's listeners and authorizer) replaces the defaults."""
    props = {
        "process.roles": "broker,controller",
        "node.id": str(config.node_id),
        "controller.quorum.voters": config.voters or f"1@{config.host}:{config.controller_port}",
        "listeners": f"PLAINTEXT://{config.host}:{config.port},"
        f"CONTROLLER://{config.host}:{config.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{config.host}:{config.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(config.home / "data"),
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "8",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "log.retention.check.interval.ms": "60000",
        "controlled.shutdown.enable": "true",
    }
    props.update(security or {})
    props.update(config.overrides)
    return props


def kafka_uuid() -> str:
    """A cluster id in Kafka's form: 16 random bytes, URL-safe base64, no padding; like
    Kafka's own Uuid.randomUuid, never one starting with '-', which a command line
    would take for an option."""
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not candidate.startswith("-"):
            return candidate


class LocalBroker:
    """Start, stop and inspect the local node described by a ``BrokerConfig``."""

    def __init__(self, config: BrokerConfig, distribution: KafkaDistribution) -> None:
        self.config = config
        self.distribution = distribution
        self._child: subprocess.Popen[bytes] | None = None  # when this object started it

    @property
    def pid_file(self) -> Path:
        return self.config.home / "broker.pid"

    @property
    def log_dir(self) -> Path:
        return self.config.home / "logs"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "server.log"

    def _recorded_pid(self) -> int | None:
        """The pid in the pid file if that process is still our broker."""
        return recorded_pid(self.pid_file, "kafka.Kafka", str(self.config.home))

    def _status(self, state: str, pid: int | None, **extra: str) -> BrokerStatus:
        return BrokerStatus(
            state=state,
            bootstrap=self.config.bootstrap,
            pid=pid,
            home=str(self.config.home),
            log_file=str(self.log_file),
            detail=extra.get("detail", ""),
        )

    def client_properties(self) -> dict[str, str]:
        """librdkafka security properties for this node: the operator's SASL_SSL
        connection for a secure home, none for a plain one."""
        if is_secure_home(self.config.home):
            return admin_client_properties(self.config.home)
        return {}

    def status(self, timeout_seconds: float = 3.0) -> BrokerStatus:
        """The truth: our process alive and answering metadata, or not."""
        pid = self._recorded_pid()
        if pid is None:
            detail = ""
            if port_open(self.config.host, self.config.port):
                detail = f"port {self.config.port} is answered by a process this home did not start"
            return self._status("stopped", None, detail=detail)
        info = probe(
            self.config.bootstrap,
            timeout_seconds=timeout_seconds,
            security=self.client_properties(),
        )
        if info is None:
            return self._status("unhealthy", pid, detail="process alive but no metadata response")
        return replace(self._status("running", pid), cluster=info)

    def _formatted(self) -> bool:
        return (self.config.home / "data" / "meta.properties").is_file()

    def _format_storage(self, properties_file: Path, scram: str | None = None) -> None:
        """Format the KRaft log directory once; a formatted home keeps its cluster id.
        ``scram``: an ``--add-scram`` credential to bootstrap into the metadata."""
        if self._formatted():
            return
        cluster_id_file = self.config.home / "cluster.id"
        if not cluster_id_file.is_file():
            cluster_id_file.write_text(kafka_uuid() + "\n")
        command = [
            "java", *self._jvm_flags(heap_mb=256), "kafka.tools.StorageTool", "format",
            f"--cluster-id={cluster_id_file.read_text().strip()}", "-c", str(properties_file),
        ]  # fmt: skip
        if scram is not None:
            command += ["--add-scram", scram]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=FORMAT_SECONDS_MAX, check=False
        )
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise BrokerUnavailableError(f"formatting the KRaft storage failed: {last[0]}")

    def _jvm_flags(self, heap_mb: int) -> list[str]:
        flags = [
            f"-Xms{min(256, heap_mb)}m", f"-Xmx{heap_mb}m", "-XX:+UseG1GC",
            # 4 MiB regions: a produce request of the clients' 1 MiB batches is then not
            # a humongous object (half a region or more), each of which started a
            # G1 cycle: 38 of them in 22 s of the end-to-end bench, 2 s of GC CPU
            "-XX:G1HeapRegionSize=4m",
            "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true", f"-Dkafka.logs.dir={self.log_dir}",
            f"-Dclearing.tag={self.config.tag}", f"-Dclearing.home={self.config.home}",
            "-cp", self.distribution.classpath,
        ]  # fmt: skip
        if self.config.log4j_config is not None:
            flags.insert(0, f"-Dlog4j2.configurationFile={self.config.log4j_config}")
        return flags

    def start(self, timeout_seconds: float = START_SECONDS_MAX) -> tuple[BrokerStatus, bool]:
        """Start unless already running; return the status and whether it was started."""
        current = self.status()
        if current.running:
            return current, False
        if current.state == "unhealthy":
            self.stop()
        process = self.launch()
        return self.wait_started(process, timeout_seconds), True

    def launch(self) -> subprocess.Popen[bytes]:
        """Prepare the home and start the JVM, without waiting for it to answer: the
        nodes of a cluster are all launched before any can (a quorum needs most of
        its voters)."""
        if port_open(self.config.host, self.config.port):
            raise BrokerUnavailableError(
                f"port {self.config.port} is in use by another process; choose another "
                "with --port (or CLEARING_BROKER_PORT), or use it with KAFKA_BOOTSTRAP"
            )
        self.distribution.ensure()
        for sub in ("data", "logs"):
            (self.config.home / sub).mkdir(parents=True, exist_ok=True)
        properties_file = self.config.home / "server.properties"
        if self.config.secure:
            self._prepare_secure(properties_file)
        else:
            self._refuse_plain_start_of_secure_home()
            properties_file.write_text(
                "".join(f"{k}={v}\n" for k, v in server_properties(self.config).items())
            )
            self._format_storage(properties_file)
        command = [
            "java",
            *self._jvm_flags(self.config.heap_mb),
            "kafka.Kafka",
            str(properties_file),
        ]
        with (self.log_dir / "stdout.log").open("ab") as out:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        self._child = process
        self.pid_file.write_text(
            json.dumps({"pid": process.pid, "bootstrap": self.config.bootstrap}) + "\n"
        )
        return process

    def wait_started(
        self, process: subprocess.Popen[bytes], timeout_seconds: float = START_SECONDS_MAX
    ) -> BrokerStatus:
        """The launched node's status once it answers; else it is stopped and the error
        names its log."""
        info = wait_until_healthy(
            self.config.bootstrap, timeout_seconds, security=self.client_properties(),
            gone=lambda: process.poll() is not None,
        )  # fmt: skip
        if info is None:
            exited = process.poll()
            self.stop()
            why = (
                f"exited with {exited}"
                if exited is not None
                else f"not healthy in {timeout_seconds:.0f} s"
            )
            raise BrokerUnavailableError(f"the local broker {why}; see {self.log_dir}/stdout.log")
        return replace(self._status("running", process.pid), cluster=info)

    def _refuse_plain_start_of_secure_home(self) -> None:
        if is_secure_home(self.config.home):
            raise BrokerUnavailableError(
                f"{self.config.home} holds a secure broker (SASL_SSL, ACLs); start it with "
                "--secure, or use another --home for a plain one"
            )

    def _prepare_secure(self, properties_file: Path) -> None:
        """TLS files, the operator's password, server.properties (0600), and the storage
        formatted with the operator's SCRAM credential."""
        home = self.config.home
        if self._formatted() and not is_secure_home(home):
            raise BrokerUnavailableError(
                f"{home} was formatted for a plain broker: it has no operator credential; "
                "use a new --home for --secure"
            )
        tls = ensure_tls(tls_files(home).folder, self.config.host)
        password = admin_password(home)
        security = secure_properties(
            self.config.host, self.config.port, self.config.controller_port, tls, password
        )
        props = server_properties(self.config, security)
        write_private(properties_file, "".join(f"{k}={v}\n" for k, v in props.items()).encode())
        write_credentials(home, self.config.bootstrap, password)  # first: a retry reuses it
        self._format_storage(properties_file, scram=scram_format_argument(password))

    def stop(self, timeout_seconds: float = STOP_SECONDS_MAX) -> bool:
        """Controlled shutdown (SIGTERM), then SIGKILL; True if a broker was running."""
        pid = self._recorded_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        terminate(pid, self._child, timeout_seconds)
        self.pid_file.unlink(missing_ok=True)
        self._child = None
        return True
