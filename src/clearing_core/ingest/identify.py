"""The ingest stage's second step: who produced an event (Ed25519 signatures carried
in two Kafka headers), and whether it came under its key (``envelope``).

The step (``identify_events``, one event at a time) runs on the events the fast
lane did not take: the lane takes only unsigned events, where the policy lets
them in, and checks their keys in columns (``fast_lane.identify``).

Why signatures and not the broker's word: Kafka does not tell a consumer which
principal produced a record, and broker ACLs (where configured) only say who
may write to a topic, not on whose behalf an event speaks. So each participant
signs the events it reports with its own Ed25519 key, the reference data holds
its public key (``Participant.public_key``), and the ingest stage verifies the
signature and then checks that the verified signer is the one the event says
reported it, and a party that may report it. The design and its threat model
are in ``docs/identity.md``.

What is signed (``signed_message``), each part for a reason:

- a domain tag (``clearing.signed-event/1``): the signature means "this is a
  clearing event", and cannot be taken for a signature the same key made for
  any other purpose (and a future message format gets a new tag);
- the topic: a signed event cannot be replayed onto another topic;
- the Kafka key, with whether there is one: a signed event cannot be replayed
  under another key, so onto another partition, whose de-duplication table
  does not know its event id (a replay under the same topic and key is a
  ``DUPLICATE_EVENT``, and an old one ``TIMESTAMP_TOO_OLD``);
- the SHA-256 of the value: every byte of the encoded event, schema
  fingerprint included, at a fixed size.

Topic and key are length-prefixed, so no two (topic, key) pairs give the same
message. Not signed: the Kafka timestamp (the broker may set it), partition,
offset and any other header.

Pure: no Kafka or Faust import; headers arrive as ``(name, bytes)`` pairs.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from clearing_core.errors import InputError
from clearing_core.ingest.batch import Case, Refused
from clearing_core.ingest.checks import Rejection
from clearing_core.ingest.envelope import key_problem
from clearing_core.refdata.models import ED25519_KEY_BYTES, PaymentKind, decode_key_bytes
from clearing_core.refdata.snapshot import ReferenceData

DOMAIN_TAG = b"clearing.signed-event/1\x00"
SIGNER_HEADER = "clearing-signer"
SIGNATURE_HEADER = "clearing-signature"
SIGNATURE_BYTES = 64
SIGNER_BYTES_MAX = 256

Headers = tuple[tuple[str, bytes], ...]


class IdentityReason(StrEnum):
    """Rejection reason codes of the producer check (``checks.Reason`` holds those
    of the business rules, ``envelope.InputReason`` those of the envelope)."""

    UNSIGNED_EVENT = "UNSIGNED_EVENT"  # the policy requires a signature, none is there
    UNKNOWN_SIGNER = "UNKNOWN_SIGNER"  # clearing-signer names no participant
    SIGNER_HAS_NO_KEY = "SIGNER_HAS_NO_KEY"  # the signer has no public_key
    BAD_SIGNATURE = "BAD_SIGNATURE"  # missing, doubled, or not verifying
    SIGNER_NOT_PARTY = "SIGNER_NOT_PARTY"  # verified, but not the reporter or not a party


class SignedInput(Protocol):
    """What the check needs of a record as the broker gave it (``batch.RawEvent``)."""

    @property
    def topic(self) -> str: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes: ...
    @property
    def headers(self) -> Headers: ...


def signed_message(topic: str, key: bytes | None, value: bytes) -> bytes:
    """The bytes a participant signs for one event (see the module notes)."""
    topic_bytes = topic.encode("utf-8")
    key_part = b"\x00" if key is None else b"\x01" + len(key).to_bytes(4, "big") + key
    return b"".join([
        DOMAIN_TAG, len(topic_bytes).to_bytes(4, "big"), topic_bytes, key_part,
        hashlib.sha256(value).digest(),
    ])  # fmt: skip


def sign_event(
    private_key: Ed25519PrivateKey, signer_id: str, topic: str, key: bytes | None, value: bytes
) -> Headers:
    """The two headers that make an event ``signer_id``'s: its id and the signature."""
    signature = private_key.sign(signed_message(topic, key, value))
    return ((SIGNER_HEADER, signer_id.encode("utf-8")), (SIGNATURE_HEADER, signature))


def header_pairs(raw: Any) -> Headers:
    """Kafka headers as clients give them (a list of pairs, a mapping, or None; values
    bytes, text or None) as a tuple of ``(name, bytes)`` in their order."""
    if raw is None:
        return ()
    items = raw.items() if isinstance(raw, Mapping) else raw
    pairs = []
    for name, value in items:
        text = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value or b"")
        pairs.append((text, data))
    return tuple(pairs)


# Keys: the producer's private key file and the public key for the reference data.


def load_private_key(data: bytes) -> Ed25519PrivateKey:
    """A private key file's content: PEM (PKCS #8, unencrypted) or the raw 32-byte
    seed in base64 or hex. Raises ``InputError``."""
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise InputError(f"unreadable PEM private key: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise InputError(f"the PEM key is {type(key).__name__}, not an Ed25519 private key")
        return key
    try:
        raw = decode_key_bytes(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise InputError("a private key file holds PEM, or 32 bytes in base64 or hex") from None
    if len(raw) != ED25519_KEY_BYTES:
        raise InputError(f"an Ed25519 private key is {ED25519_KEY_BYTES} bytes, not {len(raw)}")
    return Ed25519PrivateKey.from_private_bytes(raw)


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )  # fmt: skip


def public_key_raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@functools.lru_cache(maxsize=4096)
def _verifier(public_key: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(decode_key_bytes(public_key))


# The step, and the check it runs on every decoded event.


def identify_events(cases: Sequence[Case], refdata: ReferenceData, keys_must_match: bool) -> None:
    """Mark each decoded case identified, or refuse it: its signature first (the
    producer, where it verified, goes on its dead letters), then its Kafka key, which
    ``keys_must_match`` also requires to be the record's key field (DESIGN section 4)."""
    for case in cases:
        if case.refused is not None:
            continue
        event, name, record = case.event, case.name, case.record
        denied = check_identity(event, name, record, refdata)
        case.principal = authenticated_principal(event, denied)
        if denied is not None:
            why = (denied.reason_code, denied.message)
            case.refused = Refused(*why, case.event_id, case.hint, case.principal)
            continue
        bad_key = key_problem(event.key, name, record, must_match=keys_must_match)
        if bad_key is not None:
            case.refused = Refused(*bad_key, case.event_id, case.hint)
            continue
        case.identified = True


def check_identity(
    event: SignedInput, record_name: str, record: Mapping[str, Any], refdata: ReferenceData
) -> Rejection | None:
    """None where the event may be accepted as far as its producer goes, else why not.

    Unsigned: accepted unless ``refdata.policy.require_signed_events``. Signed: always
    verified, whatever the policy; the verified signer must be the event's
    ``reporter_id`` and a party that may report it (``_party_problem``)."""
    if not event.headers and not refdata.policy.require_signed_events:
        return None  # the common case, decided before anything is built
    reporter = record.get("reporter_id")
    event_id = record.get("event_id") if isinstance(record.get("event_id"), str) else None

    def reject(reason: IdentityReason, message: str) -> Rejection:
        return Rejection(str(reason), message, event_id)

    signers = [v for n, v in event.headers if n == SIGNER_HEADER]
    signatures = [v for n, v in event.headers if n == SIGNATURE_HEADER]
    claims = f"claims reporter {reporter!r}"
    if not signers and not signatures:
        if not refdata.policy.require_signed_events:
            return None
        why = f"unsigned event {claims}; the policy requires a {SIGNATURE_HEADER} header"
        return reject(IdentityReason.UNSIGNED_EVENT, why)
    if len(signers) != 1 or len(signatures) != 1:
        why = f"{len(signers)} {SIGNER_HEADER} and {len(signatures)} {SIGNATURE_HEADER} headers"
        return reject(IdentityReason.BAD_SIGNATURE, f"{why}; one of each is needed ({claims})")
    signer = _signer_id(signers[0])
    participant = refdata.participants.get(signer) if signer is not None else None
    if signer is None or participant is None:
        shown = signer if signer is not None else signers[0][:80]
        why = f"signer {shown!r} is not a participant ({claims})"
        return reject(IdentityReason.UNKNOWN_SIGNER, why)
    if participant.public_key is None:
        why = f"signer {signer!r} has no public_key in the reference data ({claims})"
        return reject(IdentityReason.SIGNER_HAS_NO_KEY, why)
    if not _verifies(participant.public_key, signatures[0], event):
        why = f"signature of {signer!r} does not verify over this topic, key and value"
        why += f" (altered, or signed for another; {claims})"
        return reject(IdentityReason.BAD_SIGNATURE, why)
    problem = _party_problem(record_name, record, signer, refdata)
    return reject(IdentityReason.SIGNER_NOT_PARTY, problem) if problem else None


def authenticated_principal(event: SignedInput, rejection: Rejection | None) -> str | None:
    """The producer's participant id where ``check_identity`` verified its signature
    (its verdict ``rejection``), for the ``principal`` of a ``Rejected`` record."""
    if rejection is not None and rejection.reason_code != IdentityReason.SIGNER_NOT_PARTY:
        return None
    signers = [v for n, v in event.headers if n == SIGNER_HEADER]
    return _signer_id(signers[0]) if len(signers) == 1 else None


def _signer_id(raw: bytes) -> str | None:
    if len(raw) > SIGNER_BYTES_MAX:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _verifies(public_key: str, signature: bytes, event: SignedInput) -> bool:
    if len(signature) != SIGNATURE_BYTES:
        return False
    try:
        _verifier(public_key).verify(signature, signed_message(event.topic, event.key, event.value))
    except InvalidSignature:
        return False
    return True


def _party_problem(
    record_name: str, record: Mapping[str, Any], signer: str, refdata: ReferenceData
) -> str | None:
    """Why the verified ``signer`` may not report this event, or None. The same rules
    as ``validation`` applies to ``reporter_id``, now of the one who signed."""
    name = record_name.removeprefix("clearing.")
    reporter = record.get("reporter_id")
    if reporter != signer:
        return f"signed by {signer!r}, but claims reporter {reporter!r}"
    if name == "MeterReading":
        contract = refdata.contracts.get(str(record.get("contract_id")))
        if contract is None or signer in (contract.seller_id, contract.buyer_id):
            return None  # an unknown contract is validation's UNKNOWN_CONTRACT
        parties = f"seller {contract.seller_id!r} nor buyer {contract.buyer_id!r}"
        return f"signed by {signer!r}, neither {parties} of {contract.contract_id!r}"
    if name == "ComputeUsage":
        provider = record.get("provider_id")
        return None if signer == provider else f"signed by {signer!r}, not provider {provider!r}"
    if name == "Payment":
        payer, payee, kind = record.get("payer_id"), record.get("payee_id"), record.get("kind")
        if kind == PaymentKind.ELECTRICITY_BILL:
            if signer in (payer, payee):
                return None
            return f"signed by {signer!r}, neither payer {payer!r} nor payee {payee!r}"
        return None if signer == payer else f"signed by {signer!r}, not payer {payer!r} of a {kind}"
    return f"no signing rule for record type {record_name!r}"
