"""One frozen settings object, built once at start from the environment.

Why: the core takes configuration as arguments and never reads globals; the
services read the environment exactly here, so a test or a worker can see at a
glance what it runs with.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_BROKER_HOST = "127.0.0.1"
DEFAULT_BROKER_PORT = 9092
BROKER_HOME_NAME = "kafka"  # the local broker's folder in the state folder
CLUSTER_FILE = "cluster.json"  # in the broker home: a local cluster's shape (broker/cluster.py)
BROKER_PORTS_PER_NODE = 2  # a node's client port, then its controller port
DEFAULT_CONTROLLER_PORT = 9093
DEFAULT_BROKER_HEAP_MB = 768  # enough for the demo and tests; small beside the workers on 2 cores
DEFAULT_METRICS_PORT = 9464  # Prometheus /metrics of a worker; 0 turns it off
DEFAULT_INGEST_BATCH_MAX = 50_000  # 7-9% less CPU/event than 20,000, same memory (performance.md)
DEFAULT_CHECKPOINT_IDS = 500_000  # about 3 s of a takeover's reading, at most
CHECKPOINT_IDS_LIMITS = (1, 100_000_000)
INGEST_BATCH_LIMITS = (1, 100_000)  # a batch's sends stay far below a transaction's limits
DEFAULT_CHAIN_PORT = 8545  # the embedded chain's JSON-RPC (clearing chain start)
DEFAULT_BROKER_TIMEOUT_SECONDS = 10  # a command's wait for a broker to answer before it gives up
BROKER_TIMEOUT_LIMITS = (1, 3600)


def package_root() -> Path:
    """The directory holding ``clearing_services`` (``services/`` in the working tree)."""
    return Path(__file__).resolve().parent


def project_root() -> Path | None:
    """The repository root when running from a checkout (editable install), else None."""
    candidate = package_root().parents[1]
    if (candidate / "pyproject.toml").is_file() and (candidate / "infra").is_dir():
        return candidate
    return None


def bundled_dir(folder: str) -> Path:
    """``<folder>/`` of the checkout, or the copy packed into the wheel as ``_<folder>``
    (pyproject.toml: ``force-include``)."""
    packaged = package_root() / f"_{folder}"
    if packaged.is_dir():
        return packaged
    root = project_root()
    assert root is not None, f"neither a checkout nor a wheel with _{folder}"
    return root / folder


def infra_dir() -> Path:
    """``infra/`` of the checkout, or the copy packed into the wheel."""
    return bundled_dir("infra")


SECURITY_PROTOCOLS = ("PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")


@dataclass(frozen=True)
class ClientSecurity:
    """How this process's Kafka clients authenticate: the connection profile.

    ``PLAINTEXT`` (the default) adds nothing to a client's configuration.
    ``SASL_SSL``: SCRAM over TLS as ``username``, trusting ``ca_file`` (None: the
    system's CAs); the secure local broker (``clearing broker start --secure``)
    writes these values for its operator to ``<home>/admin.env``.
    """

    protocol: str = "PLAINTEXT"
    mechanism: str = "SCRAM-SHA-512"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None

    @property
    def secure(self) -> bool:
        return self.protocol == "SASL_SSL"

    def librdkafka(self) -> dict[str, str]:
        """The librdkafka (confluent-kafka) properties of this profile."""
        if not self.secure:
            return {}
        assert self.username is not None
        assert self.password is not None
        props = {
            "security.protocol": self.protocol,
            "sasl.mechanism": self.mechanism,
            "sasl.username": self.username,
            "sasl.password": self.password,
        }
        if self.ca_file is not None:
            props["ssl.ca.location"] = str(self.ca_file)
        return props


def _input_error(message: str) -> Exception:
    from clearing_core.errors import InputError

    return InputError(message)


def load_client_security(env: Mapping[str, str]) -> ClientSecurity:
    """``CLEARING_KAFKA_SECURITY_PROTOCOL`` (PLAINTEXT | SASL_SSL), ``..._SASL_MECHANISM``
    (SCRAM-SHA-512 | SCRAM-SHA-256), ``..._SASL_USERNAME``, ``..._SASL_PASSWORD`` and
    ``..._CA_FILE``; one clear error for a value that cannot work."""
    protocol = (env.get("CLEARING_KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").strip().upper()
    if protocol not in SECURITY_PROTOCOLS:
        raise _input_error(
            f"CLEARING_KAFKA_SECURITY_PROTOCOL={protocol!r} is not supported: "
            f"use {' or '.join(SECURITY_PROTOCOLS)}"
        )
    if protocol == "PLAINTEXT":
        return ClientSecurity()
    mechanism = (env.get("CLEARING_KAFKA_SASL_MECHANISM") or SASL_MECHANISMS[0]).strip().upper()
    if mechanism not in SASL_MECHANISMS:
        raise _input_error(
            f"CLEARING_KAFKA_SASL_MECHANISM={mechanism!r} is not supported: "
            f"use {' or '.join(SASL_MECHANISMS)}"
        )
    username = env.get("CLEARING_KAFKA_SASL_USERNAME") or ""
    password = env.get("CLEARING_KAFKA_SASL_PASSWORD") or ""
    if not username or not password:
        raise _input_error(
            "CLEARING_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs CLEARING_KAFKA_SASL_USERNAME "
            "and CLEARING_KAFKA_SASL_PASSWORD"
        )
    ca = env.get("CLEARING_KAFKA_CA_FILE") or None
    if ca is not None and not Path(ca).is_file():
        raise _input_error(f"CLEARING_KAFKA_CA_FILE={ca!r} is not a file")
    return ClientSecurity(protocol, mechanism, username, password, Path(ca) if ca else None)


def process_client_security() -> ClientSecurity:
    """This process's connection profile: its environment's ``CLEARING_KAFKA_*``
    (``load_client_security``), the profile its ``Settings`` hold as ``kafka_security``.

    Why the Kafka clients ask for it where each is built, rather than an entry point
    setting it into the clients' module at start: no client can be built before the
    profile is known (and go out PLAINTEXT), and nothing but the environment the
    process was started with decides it."""
    return load_client_security(os.environ)


@dataclass(frozen=True)
class Settings:
    """Everything a command or worker needs to know about its surroundings."""

    bootstrap_servers: str | None
    schema_registry_url: str | None
    cache_dir: Path
    state_dir: Path
    broker_host: str
    broker_port: int
    controller_port: int
    broker_heap_mb: int
    store_url: str
    worker_id: str
    metrics_port: int
    ci: bool
    # CLEARING_WRITER_SCHEMAS: directories of extra writer schema versions (docs/schemas.md)
    writer_schema_dirs: tuple[Path, ...] = ()
    # CLEARING_KAFKA_*: how the Kafka clients authenticate (ClientSecurity)
    kafka_security: ClientSecurity = ClientSecurity()
    # CLEARING_STALL_SECONDS_MAX: no commit for this long with records waiting ends a
    # worker (services/clearing_services/process/watchdog.py); above the longest table recovery
    stall_seconds_max: int = 300
    # CLEARING_INGEST_BATCH_MAX: records an ingest worker takes per transaction (a larger
    # batch pre-aggregates more and commits less often; its latency grows with it)
    ingest_batch_max: int = DEFAULT_INGEST_BATCH_MAX
    # CLEARING_BROKER_TIMEOUT_SECONDS: how long a command that needs Kafka waits for the
    # broker to answer a metadata request before it ends with one line and exit 69
    broker_timeout_seconds: int = DEFAULT_BROKER_TIMEOUT_SECONDS
    # CLEARING_CHAIN_PORT: the embedded chain node's JSON-RPC port on loopback
    chain_port: int = DEFAULT_CHAIN_PORT
    # CLEARING_CHAIN_KEY_FILE: the settlement operator's private key (hex) for a chain
    # given by URL; the embedded chain uses its public dev account 0
    chain_key_file: Path | None = None
    # CLEARING_CHAIN_HOME: the embedded chain's folder, when several state folders (worker
    # processes on one host) must share one chain; default $CLEARING_STATE_DIR/chain
    chain_home_dir: Path | None = None
    # the local broker's node count, as `clearing broker start --nodes N` recorded it
    # in the broker home (CLUSTER_FILE); 1 without a record
    broker_nodes: int = 1
    # CLEARING_CHECKPOINT_DIR: where ingest workers checkpoint their partitions' seen
    # ids, shared by every worker that may take a partition over (a shared volume
    # across hosts); default $CLEARING_STATE_DIR/ingest-checkpoints
    checkpoint_dir_override: Path | None = None
    # CLEARING_CHECKPOINT_IDS: a partition's seen ids are checkpointed once it took this
    # many since its last checkpoint (a takeover reads at most these back from the log)
    checkpoint_ids: int = DEFAULT_CHECKPOINT_IDS

    @property
    def local_bootstrap(self) -> str:
        """The local broker's address; every node's, for a local cluster."""
        return local_addresses(self.broker_host, self.broker_port, self.broker_nodes)

    @property
    def broker_home(self) -> Path:
        return self.state_dir / BROKER_HOME_NAME

    @property
    def chain_home(self) -> Path:
        return self.chain_home_dir or self.state_dir / "chain"

    @property
    def embedded_chain_url(self) -> str:
        return f"http://127.0.0.1:{self.chain_port}"

    @property
    def checkpoint_dir(self) -> Path:
        return self.checkpoint_dir_override or self.state_dir / "ingest-checkpoints"

    def bootstrap(self) -> str:
        """``KAFKA_BOOTSTRAP`` if set, else the local broker's address."""
        return self.bootstrap_servers or self.local_bootstrap


def tune_process_environment(environ: MutableMapping[str, str]) -> None:
    """Process-wide defaults set by the entry points (the CLI, the benchmarks, the test
    session) before any parallel kernel runs; a library never changes its process's
    environment.

    OMP_WAIT_POLICY=PASSIVE: GNU OpenMP (numba's "omp" threading layer) spins at the
    end of each parallel region waiting for its threads. When another process holds a
    core, the spinning thread and a descheduled worker share the other one: a 10M-
    obligation netting batch then took 40-56 ms instead of 23 ms serially, and a 1M
    batch 40 ms instead of 2 ms. Passive waiting degrades to about the serial time and
    costs 0.2-0.5 ms per launch on a quiet machine. An explicit setting wins, and
    libgomp reads it when it loads, so it must be set before the first launch.
    """
    if "GOMP_SPINCOUNT" not in environ:
        environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _path(env: Mapping[str, str], name: str) -> Path | None:
    """A path variable; unset or empty: None (the default applies)."""
    return Path(env[name]) if env.get(name) else None


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        from clearing_core.errors import InputError

        raise InputError(f"{name}={raw!r} is not an integer") from None


def _bounded(env: Mapping[str, str], name: str, default: int, limits: tuple[int, int]) -> int:
    value = _int(env, name, default)
    if not limits[0] <= value <= limits[1]:
        raise _input_error(f"{name}={value} is outside {limits[0]:,}..{limits[1]:,}")
    return value


def local_addresses(host: str, port: int, nodes: int) -> str:
    """Every local node's client address: node K listens on ``port + 2(K-1)`` (its
    controller one above), so a client finds a cluster with any one node down."""
    return ",".join(f"{host}:{port + BROKER_PORTS_PER_NODE * k}" for k in range(nodes))


def recorded_broker_nodes(home: Path) -> int:
    """The node count ``<home>/cluster.json`` records; 1 without one."""
    try:
        nodes = json.loads((home / CLUSTER_FILE).read_text())["nodes"]
    except FileNotFoundError:
        return 1
    except (ValueError, KeyError, TypeError) as exc:
        raise _input_error(f"{home / CLUSTER_FILE} is unreadable ({exc})") from None
    if not isinstance(nodes, int) or nodes < 1:
        raise _input_error(f"{home / CLUSTER_FILE}: nodes {nodes!r} is not a node count")
    return nodes


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from an environment mapping (``os.environ`` by default)."""
    env = os.environ if env is None else env
    root = project_root()
    default_cache = root / ".cache" if root else Path.home() / ".cache" / "clearing-house"
    default_state = root / ".run" if root else Path.home() / ".local" / "state" / "clearing-house"
    state_dir = Path(env.get("CLEARING_STATE_DIR") or default_state)
    return Settings(
        bootstrap_servers=env.get("KAFKA_BOOTSTRAP") or None,
        schema_registry_url=env.get("SCHEMA_REGISTRY_URL") or None,
        cache_dir=Path(env.get("CLEARING_CACHE_DIR") or default_cache),
        state_dir=state_dir,
        broker_nodes=recorded_broker_nodes(state_dir / BROKER_HOME_NAME),
        broker_host=env.get("CLEARING_BROKER_HOST") or DEFAULT_BROKER_HOST,
        broker_port=_int(env, "CLEARING_BROKER_PORT", DEFAULT_BROKER_PORT),
        controller_port=_int(env, "CLEARING_CONTROLLER_PORT", DEFAULT_CONTROLLER_PORT),
        broker_heap_mb=_int(env, "CLEARING_BROKER_HEAP_MB", DEFAULT_BROKER_HEAP_MB),
        store_url=env.get("CLEARING_STORE") or "rocksdb://",
        worker_id=env.get("CLEARING_WORKER_ID") or f"{socket.gethostname()}-{os.getpid()}",
        metrics_port=_int(env, "CLEARING_METRICS_PORT", DEFAULT_METRICS_PORT),
        stall_seconds_max=_int(env, "CLEARING_STALL_SECONDS_MAX", 300),
        ingest_batch_max=_bounded(
            env, "CLEARING_INGEST_BATCH_MAX", DEFAULT_INGEST_BATCH_MAX, INGEST_BATCH_LIMITS
        ),
        broker_timeout_seconds=_bounded(
            env,
            "CLEARING_BROKER_TIMEOUT_SECONDS",
            DEFAULT_BROKER_TIMEOUT_SECONDS,
            BROKER_TIMEOUT_LIMITS,
        ),
        chain_port=_int(env, "CLEARING_CHAIN_PORT", DEFAULT_CHAIN_PORT),
        checkpoint_dir_override=_path(env, "CLEARING_CHECKPOINT_DIR"),
        checkpoint_ids=_bounded(
            env, "CLEARING_CHECKPOINT_IDS", DEFAULT_CHECKPOINT_IDS, CHECKPOINT_IDS_LIMITS
        ),
        chain_key_file=_path(env, "CLEARING_CHAIN_KEY_FILE"),
        chain_home_dir=_path(env, "CLEARING_CHAIN_HOME"),
        ci=env.get("CI", "").lower() == "true",
        kafka_security=load_client_security(env),
        writer_schema_dirs=tuple(
            Path(p) for p in (env.get("CLEARING_WRITER_SCHEMAS") or "").split(os.pathsep) if p
        ),
    )
