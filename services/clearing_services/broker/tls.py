"""TLS material of the secure local broker: a private CA and the node's certificate.

Why a CA of its own and PEM files: the broker is local, so no public CA can vouch
for it; a self-signed CA that exists only in the broker home is the smallest
honest trust root. Kafka reads PEM key stores directly (``ssl.keystore.type=PEM``)
and librdkafka and Python's ``ssl`` read PEM trust files, so no keytool or JKS
password is involved. Every file is written 0600. The CA's private key is not
kept: it signs the node certificate once and is discarded, so nothing in the home
can mint further certificates; a new CA is made when the files are missing.

The node certificate serves both TLS ends: the server side of every listener, and
the client side of the broker's own connection to its controller listener, which
asks for a client certificate (mutual TLS). Its subject is ``CN=clearing-broker``,
so the broker's principal there is ``User:CN=clearing-broker``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NODE_COMMON_NAME = "clearing-broker"
NODE_PRINCIPAL = f"User:CN={NODE_COMMON_NAME}"
CA_DAYS = 3650
NODE_DAYS = 825
_PRIVATE = 0o600


@dataclass(frozen=True)
class TlsFiles:
    """Where the PEM files live in a broker home."""

    folder: Path

    @property
    def ca_file(self) -> Path:
        """The CA certificate: the broker's and the clients' trust store."""
        return self.folder / "ca.pem"

    @property
    def keystore(self) -> Path:
        """The node's private key (PKCS#8) followed by its certificate chain."""
        return self.folder / "broker.pem"

    def exist(self) -> bool:
        return self.ca_file.is_file() and self.keystore.is_file()


def write_private(path: Path, data: bytes) -> None:
    """Write a file readable by its owner only (created 0600, replaced atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _PRIVATE)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(partial, _PRIVATE)
    partial.replace(path)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _alt_names(host: str) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    try:
        address = ipaddress.ip_address(host)
        if str(address) != "127.0.0.1":
            names.append(x509.IPAddress(address))
    except ValueError:
        if host != "localhost":
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _ca(now: dt.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("clearing-house local broker CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _node(
    host: str, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, now: dt.datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(NODE_COMMON_NAME))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=NODE_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_alt_names(host), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def ensure_tls(folder: Path, host: str) -> TlsFiles:
    """The CA and node files in ``folder``, made once; existing files are kept."""
    files = TlsFiles(folder)
    if files.exist():
        return files
    now = dt.datetime.now(dt.UTC)
    ca_key, ca_cert = _ca(now)
    node_key, node_cert = _node(host, ca_key, ca_cert, now)
    pem = serialization.Encoding.PEM
    key_pem = node_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    chain = node_cert.public_bytes(pem) + ca_cert.public_bytes(pem)
    write_private(files.keystore, key_pem + chain)
    write_private(files.ca_file, ca_cert.public_bytes(pem))
    return files
