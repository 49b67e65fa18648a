"""The secure mode of the local node: SASL/SCRAM over TLS and the StandardAuthorizer.

Listeners of a secure node (all on loopback):

* ``CLIENT`` (the client port): ``SASL_SSL`` with SCRAM-SHA-512. Every client,
  the operator included, authenticates with a SCRAM user; there is no
  unauthenticated way in. It is also the inter-broker listener, where the node
  authenticates as the operator ``clearing-admin``.
* ``CONTROLLER`` (the controller port): ``SSL`` with client certificates required.
  KRaft controllers cannot use SCRAM (the credentials live in the metadata the
  controller serves), and plain text would make anyone on the machine a super user
  there; mutual TLS with the node certificate (``User:CN=clearing-broker``) does not.

``super.users`` is exactly those two principals. Everyone else gets only what an
ACL allows (``allow.everyone.if.no.acl.found=false``): ``clearing security
provision`` writes those ACLs.

The operator's SCRAM credential is bootstrapped into the metadata when the storage
is formatted (``kafka-storage format --add-scram``), with a random password kept in
``<home>/admin.env`` (0600), a file a shell can source (``set -a; . admin.env``).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path

from clearing_services.broker.tls import NODE_PRINCIPAL, TlsFiles, write_private

ADMIN_USER = "clearing-admin"
ADMIN_PRINCIPAL = f"User:{ADMIN_USER}"
MECHANISM = "SCRAM-SHA-512"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
CREDENTIALS_FILE = "admin.env"
TLS_FOLDER = "tls"


def credentials_file(home: Path) -> Path:
    return home / CREDENTIALS_FILE


def tls_files(home: Path) -> TlsFiles:
    return TlsFiles(home / TLS_FOLDER)


def is_secure_home(home: Path) -> bool:
    """Whether this home was formatted for the secure mode (it has admin credentials)."""
    return credentials_file(home).is_file()


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines (no quoting; comments and blank lines skipped)."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def admin_password(home: Path) -> str:
    """The operator's password: the one in ``admin.env``, else a new random one."""
    path = credentials_file(home)
    if path.is_file():
        password = read_env_file(path).get("CLEARING_KAFKA_SASL_PASSWORD", "")
        if password:
            return password
    return secrets.token_urlsafe(24)


def write_credentials(home: Path, bootstrap: str, password: str) -> Path:
    """``admin.env``: what a client needs to connect as the operator (0600)."""
    lines = {
        "KAFKA_BOOTSTRAP": bootstrap,
        "CLEARING_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "CLEARING_KAFKA_SASL_MECHANISM": MECHANISM,
        "CLEARING_KAFKA_SASL_USERNAME": ADMIN_USER,
        "CLEARING_KAFKA_SASL_PASSWORD": password,
        "CLEARING_KAFKA_CA_FILE": str(tls_files(home).ca_file),
    }
    body = "# The operator's connection to the secure local broker; keep private.\n"
    body += "".join(f"{k}={v}\n" for k, v in lines.items())
    path = credentials_file(home)
    write_private(path, body.encode())
    return path


def admin_client_properties(home: Path) -> dict[str, str]:
    """librdkafka properties of the operator's connection, from ``admin.env``."""
    env = read_env_file(credentials_file(home))
    return {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": env.get("CLEARING_KAFKA_SASL_MECHANISM", MECHANISM),
        "sasl.username": env["CLEARING_KAFKA_SASL_USERNAME"],
        "sasl.password": env["CLEARING_KAFKA_SASL_PASSWORD"],
        "ssl.ca.location": env["CLEARING_KAFKA_CA_FILE"],
    }


def scram_format_argument(password: str) -> str:
    """The ``--add-scram`` value of ``kafka-storage format`` for the operator."""
    return f"{MECHANISM}=[name={ADMIN_USER},password={password}]"


def secure_properties(
    host: str, port: int, controller_port: int, tls: TlsFiles, password: str
) -> Mapping[str, str]:
    """What the secure mode changes in ``server.properties``."""
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{ADMIN_USER}" password="{password}";'
    )
    return {
        "listeners": f"CLIENT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"CLIENT://{host}:{port}",
        "listener.security.protocol.map": "CLIENT:SASL_SSL,CONTROLLER:SSL",
        "inter.broker.listener.name": "CLIENT",
        "controller.listener.names": "CONTROLLER",
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        f"listener.name.client.{MECHANISM.lower()}.sasl.jaas.config": jaas,
        "listener.name.controller.ssl.client.auth": "required",
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(tls.keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(tls.ca_file),
        "ssl.endpoint.identification.algorithm": "https",
        "authorizer.class.name": AUTHORIZER,
        "allow.everyone.if.no.acl.found": "false",
        "super.users": f"{ADMIN_PRINCIPAL};{NODE_PRINCIPAL}",
    }
