"""``clearing keys``: a participant's Ed25519 signing key (docs/identity.md).

The private key stays with the participant (a file only its owner can read);
the public key goes into the reference data as ``public_key`` of the
participant, and from there to every ingest worker.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clearing_core.errors import InputError
from clearing_core.ingest.identify import load_private_key, private_key_pem, public_key_raw
from clearing_core.refdata.codes import ID_PATTERN
from clearing_services.cli.common import emit_json, err_console, json_option, out_console


@click.group()
def keys() -> None:
    """Participant signing keys (Ed25519) for signed events."""


@keys.command("generate")
@click.option("--participant", required=True, help="Participant id the key signs for.")
@click.option(
    "--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
    help="File to write the private key to (PEM, mode 0600); must not exist.",
)  # fmt: skip
@json_option
def generate(participant: str, out: Path, as_json: bool) -> None:
    """Create a key pair: write the private key to --out (readable by you only) and
    print the public key to put into the reference data as the participant's
    public_key (then `clearing refdata publish`).

    Example: clearing keys generate --participant SOLAR-QINGHAI-07 --out solar.key
    """
    if ID_PATTERN.fullmatch(participant) is None:
        raise InputError(f"--participant {participant[:80]!r} is not a participant id")
    key = Ed25519PrivateKey.generate()
    _write_private(out, private_key_pem(key))
    _show(participant, key, out, as_json)


@keys.command("public")
@click.argument("key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--participant", default=None, help="Participant id to show with it.")
@json_option
def public(key_file: Path, participant: str | None, as_json: bool) -> None:
    """Print the public key of a private key file (PEM, or 32 bytes base64 or hex).

    Example: clearing keys public solar.key --json
    """
    key = load_private_key(key_file.read_bytes())
    _show(participant, key, key_file, as_json)


def _write_private(path: Path, pem: bytes) -> None:
    """Create ``path`` with mode 0600 from the start; never replace a key file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InputError(f"{path} exists; a key file is never overwritten") from None
    except OSError as exc:
        raise InputError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


def _show(participant: str | None, key: Ed25519PrivateKey, path: Path, as_json: bool) -> None:
    raw = public_key_raw(key)
    text = base64.b64encode(raw).decode("ascii")
    if as_json:
        emit_json({"participant_id": participant, "public_key": text,
                   "public_key_hex": raw.hex(), "private_key_file": str(path)})  # fmt: skip
        return
    err_console.print(f"private key: {path} (keep it secret; mode 0600)")
    err_console.print("add to the participant in the reference data, then publish it:")
    if participant is not None:
        out_console.print(f"- participant_id: {participant}", markup=False)
        out_console.print(f"  public_key: {text}", markup=False)
    else:
        out_console.print(f"public_key: {text}", markup=False)
