"""Signed events (clearing_core.ingest.identify): a signature verifies only for the topic,
key and value it was made for, the verified signer must be the event's reporter and
a party to it, and every refusal has its own reason code and names both parties."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.errors import InputError
from clearing_core.ingest.batch import RawEvent
from clearing_core.ingest.identify import (
    SIGNATURE_HEADER,
    SIGNER_HEADER,
    check_identity,
    header_pairs,
    load_private_key,
    private_key_pem,
    public_key_raw,
    sign_event,
    signed_message,
)
from clearing_core.ingest.stage import process_batch
from clearing_core.refdata import RefdataError, ReferenceData, load_default_refdata, parse_refdata
from tests.conftest import REPO
from tests.support import events
from tests.support.events import (
    DEFAULT_DATA_METER,
    DEFAULT_DATA_USAGE,
    compute_usage,
    meter_reading,
)

SEED = bytes(range(32))
KEYS = {  # deterministic keys: hypothesis replays need the same signatures
    "SOLAR-QINGHAI-01": Ed25519PrivateKey.from_private_bytes(SEED),
    "DC-GUIAN-04": Ed25519PrivateKey.from_private_bytes(bytes(reversed(SEED))),
    "AIAPI-BJ-01": Ed25519PrivateKey.from_private_bytes(bytes(31) + b"\x07"),
}
METER_TOPIC = "clearing.events.meter"
PAYMENT_TOPIC = "clearing.events.payment"
COMPUTE_TOPIC = "clearing.events.compute"
TOPICS = {METER_TOPIC: "MeterReading", PAYMENT_TOPIC: "Payment", COMPUTE_TOPIC: "ComputeUsage"}
T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
NOW_MS = int((T0 + timedelta(minutes=20)).timestamp() * 1000)


def refdata_with_keys(require_signed: bool = False) -> ReferenceData:
    """The default data set; three participants hold public keys."""
    data = load_default_refdata().to_data()
    for participant in data["participants"]:
        key = KEYS.get(participant["participant_id"])
        if key is not None:
            participant["public_key"] = base64.b64encode(public_key_raw(key)).decode()
    data["policy"] = {"require_signed_events": require_signed}
    return parse_refdata(data)


OPEN = refdata_with_keys(require_signed=False)
STRICT = refdata_with_keys(require_signed=True)


meter = partial(meter_reading, "m1", at=T0 + timedelta(minutes=15),
                reported_at=T0 + timedelta(minutes=16), **DEFAULT_DATA_METER)  # fmt: skip
payment = partial(events.payment, "p1", kind="TRANSFER", amount_minor=1_000, at=T0)
usage = partial(compute_usage, "c1", at=T0 + timedelta(minutes=1), reported_at=T0,
                **DEFAULT_DATA_USAGE)  # fmt: skip


def event(
    topic: str, key: bytes | None, value: bytes, signer: str | None = None,
    headers: tuple[tuple[str, bytes], ...] | None = None,
) -> RawEvent:  # fmt: skip
    if headers is None:
        headers = sign_event(KEYS[signer], signer, topic, key, value) if signer else ()
    return RawEvent(topic, 0, 1, key, value, NOW_MS, headers)


def reason(raw: RawEvent, name: str, record: dict[str, Any], refdata: ReferenceData) -> str | None:
    verdict = check_identity(raw, name, record, refdata)
    return None if verdict is None else verdict.reason_code


# Round trip, and the policy.


def test_a_signed_event_verifies_under_either_policy() -> None:
    raw = event(METER_TOPIC, b"PPA-CN-0001", b"value", "SOLAR-QINGHAI-01")
    assert dict(raw.headers)[SIGNER_HEADER] == b"SOLAR-QINGHAI-01"
    assert len(dict(raw.headers)[SIGNATURE_HEADER]) == 64
    assert reason(raw, "MeterReading", meter(), OPEN) is None
    assert reason(raw, "MeterReading", meter(), STRICT) is None


def test_unsigned_is_accepted_only_while_the_policy_allows_it() -> None:
    raw = event(METER_TOPIC, b"PPA-CN-0001", b"value")
    assert reason(raw, "MeterReading", meter(), OPEN) is None
    assert reason(raw, "MeterReading", meter(), load_default_refdata()) is None
    verdict = check_identity(raw, "MeterReading", meter(), STRICT)
    assert verdict is not None
    assert verdict.reason_code == "UNSIGNED_EVENT"
    assert "'SOLAR-QINGHAI-01'" in verdict.message
    assert verdict.event_id == "m1"


# Each reason code.


def test_a_signer_that_is_no_participant() -> None:
    headers = ((SIGNER_HEADER, b"NOBODY-01"), (SIGNATURE_HEADER, bytes(64)))
    raw = event(METER_TOPIC, b"PPA-CN-0001", b"v", headers=headers)
    verdict = check_identity(raw, "MeterReading", meter(), OPEN)
    assert verdict is not None
    assert verdict.reason_code == "UNKNOWN_SIGNER"
    assert "'NOBODY-01'" in verdict.message
    assert "'SOLAR-QINGHAI-01'" in verdict.message
    not_utf8 = ((SIGNER_HEADER, b"\xff\xfe"), (SIGNATURE_HEADER, bytes(64)))
    raw = event(METER_TOPIC, b"PPA-CN-0001", b"v", headers=not_utf8)
    assert reason(raw, "MeterReading", meter(), OPEN) == "UNKNOWN_SIGNER"


def test_a_signer_without_a_registered_key() -> None:
    key = Ed25519PrivateKey.generate()  # BANK-HK-01 has no public_key
    signer = "BANK-HK-01"
    headers = sign_event(key, signer, METER_TOPIC, b"PPA-CN-0001", b"v")
    raw = event(METER_TOPIC, b"PPA-CN-0001", b"v", headers=headers)
    verdict = check_identity(raw, "MeterReading", meter(), OPEN)
    assert verdict is not None
    assert verdict.reason_code == "SIGNER_HAS_NO_KEY"
    assert "'BANK-HK-01'" in verdict.message


@pytest.mark.parametrize("refdata", [OPEN, STRICT], ids=["policy-off", "policy-on"])
def test_a_bad_signature_is_never_ignored(refdata: ReferenceData) -> None:
    good = event(METER_TOPIC, b"PPA-CN-0001", b"value", "SOLAR-QINGHAI-01")
    altered = RawEvent(METER_TOPIC, 0, 1, b"PPA-CN-0001", b"valuE", NOW_MS, good.headers)
    verdict = check_identity(altered, "MeterReading", meter(), refdata)
    assert verdict is not None
    assert verdict.reason_code == "BAD_SIGNATURE"
    assert "'SOLAR-QINGHAI-01'" in verdict.message
    # by someone else's key
    forged = sign_event(KEYS["DC-GUIAN-04"], "SOLAR-QINGHAI-01", METER_TOPIC, b"PPA-CN-0001", b"v")
    raw = event(METER_TOPIC, b"PPA-CN-0001", b"v", headers=forged)
    assert reason(raw, "MeterReading", meter(), refdata) == "BAD_SIGNATURE"


def test_a_signature_holds_only_for_its_topic_and_key() -> None:
    headers = sign_event(KEYS["SOLAR-QINGHAI-01"], "SOLAR-QINGHAI-01", METER_TOPIC,
                         b"PPA-CN-0001", b"value")  # fmt: skip
    for topic, key in [(PAYMENT_TOPIC, b"PPA-CN-0001"), (METER_TOPIC, b"PPA-CN-0002"),
                       (METER_TOPIC, None), (METER_TOPIC, b"")]:  # fmt: skip
        raw = RawEvent(topic, 0, 1, key, b"value", NOW_MS, headers)
        assert reason(raw, "MeterReading", meter(), OPEN) == "BAD_SIGNATURE", (topic, key)
    assert signed_message("a", b"bc", b"") != signed_message("ab", b"c", b"")
    assert signed_message("t", None, b"v") != signed_message("t", b"", b"v")


@pytest.mark.parametrize(
    "headers",
    [
        ((SIGNER_HEADER, b"SOLAR-QINGHAI-01"),),
        ((SIGNATURE_HEADER, bytes(64)),),
        ((SIGNER_HEADER, b"SOLAR-QINGHAI-01"), (SIGNER_HEADER, b"DC-GUIAN-04"),
         (SIGNATURE_HEADER, bytes(64))),
        ((SIGNER_HEADER, b"SOLAR-QINGHAI-01"), (SIGNATURE_HEADER, bytes(63))),
    ],
    ids=["no-signature", "no-signer", "two-signers", "short-signature"],
)  # fmt: skip
def test_incomplete_or_ambiguous_headers_are_bad_signatures(
    headers: tuple[tuple[str, bytes], ...],
) -> None:
    raw = event(METER_TOPIC, b"PPA-CN-0001", b"v", headers=headers)
    assert reason(raw, "MeterReading", meter(), OPEN) == "BAD_SIGNATURE"


def test_a_forged_meter_reading_is_refused_and_names_both_parties() -> None:
    # DC-GUIAN-04 signs (validly) a reading that claims to be SOLAR-QINGHAI-01's
    raw = event(METER_TOPIC, b"PPA-CN-0001", b"v", "DC-GUIAN-04")
    verdict = check_identity(raw, "MeterReading", meter(reporter_id="SOLAR-QINGHAI-01"), STRICT)
    assert verdict is not None
    assert verdict.reason_code == "SIGNER_NOT_PARTY"
    assert verdict.message == "signed by 'DC-GUIAN-04', but claims reporter 'SOLAR-QINGHAI-01'"
    # the buyer may report its own reading of the contract
    assert reason(raw, "MeterReading", meter(reporter_id="DC-GUIAN-04"), STRICT) is None
    # a participant that is no party, reporting as itself
    outsider = event(METER_TOPIC, b"PPA-CN-0001", b"v", "AIAPI-BJ-01")
    verdict = check_identity(outsider, "MeterReading", meter(reporter_id="AIAPI-BJ-01"), STRICT)
    assert verdict is not None
    assert verdict.reason_code == "SIGNER_NOT_PARTY"
    assert "'AIAPI-BJ-01'" in verdict.message
    assert "'SOLAR-QINGHAI-01'" in verdict.message


def test_a_payment_must_be_signed_by_its_payer() -> None:
    raw = event(PAYMENT_TOPIC, b"DC-GUIAN-04", b"v", "SOLAR-QINGHAI-01")
    # the payee claims the payer owes it, reporting as itself or as the payer
    as_itself = payment("DC-GUIAN-04", "SOLAR-QINGHAI-01", reporter_id="SOLAR-QINGHAI-01")
    verdict = check_identity(raw, "Payment", as_itself, STRICT)
    assert verdict is not None
    assert verdict.reason_code == "SIGNER_NOT_PARTY"
    assert verdict.message == "signed by 'SOLAR-QINGHAI-01', not payer 'DC-GUIAN-04' of a TRANSFER"
    as_payer = payment("DC-GUIAN-04", "SOLAR-QINGHAI-01")
    assert reason(raw, "Payment", as_payer, STRICT) == "SIGNER_NOT_PARTY"
    # an electricity bill may come from the payee (utilities bill their customers)
    bill = payment("DC-GUIAN-04", "SOLAR-QINGHAI-01", kind="ELECTRICITY_BILL",
                   reporter_id="SOLAR-QINGHAI-01")  # fmt: skip
    assert reason(raw, "Payment", bill, STRICT) is None
    paid = event(PAYMENT_TOPIC, b"DC-GUIAN-04", b"v", "DC-GUIAN-04")
    assert reason(paid, "Payment", as_payer, STRICT) is None


def test_compute_usage_must_be_signed_by_its_provider() -> None:
    raw = event(COMPUTE_TOPIC, b"AIAPI-BJ-01", b"v", "DC-GUIAN-04")
    by_customer = usage(reporter_id="DC-GUIAN-04")  # of provider AIAPI-BJ-01
    assert reason(raw, "ComputeUsage", by_customer, STRICT) == "SIGNER_NOT_PARTY"
    good = event(COMPUTE_TOPIC, b"AIAPI-BJ-01", b"v", "AIAPI-BJ-01")
    assert reason(good, "ComputeUsage", usage(), STRICT) is None


# Any change to what was signed breaks the signature.


def _flip(data: bytes, bit: int) -> bytes:
    index = bit % (8 * len(data))
    out = bytearray(data)
    out[index // 8] ^= 1 << (index % 8)
    return bytes(out)


@settings(max_examples=200, deadline=None)
@given(
    value=st.binary(min_size=1, max_size=300), key=st.binary(min_size=1, max_size=64),
    part=st.sampled_from(["value", "key", "signature"]), bit=st.integers(0, 10_000),
)  # fmt: skip
def test_any_bit_flip_is_a_bad_signature(value: bytes, key: bytes, part: str, bit: int) -> None:
    headers = sign_event(KEYS["SOLAR-QINGHAI-01"], "SOLAR-QINGHAI-01", METER_TOPIC, key, value)
    signature = dict(headers)[SIGNATURE_HEADER]
    if part == "value":
        value = _flip(value, bit)
    elif part == "key":
        key = _flip(key, bit)
    else:
        signature = _flip(signature, bit)
    headers = ((SIGNER_HEADER, b"SOLAR-QINGHAI-01"), (SIGNATURE_HEADER, signature))
    raw = RawEvent(METER_TOPIC, 0, 1, key, value, NOW_MS, headers)
    assert reason(raw, "MeterReading", meter(), OPEN) == "BAD_SIGNATURE"


# Wiring: process_batch checks identity first, and records the verified principal.


def test_process_batch_refuses_forgeries_and_keeps_the_principal(
    codec: SingleObjectCodec,
) -> None:
    def run(raw: RawEvent) -> Any:
        return process_batch([raw], codec=codec, refdata=STRICT, expected_type=TOPICS, seen={})

    value = codec.encode("MeterReading", meter())
    good = run(event(METER_TOPIC, b"PPA-CN-0001", value, "SOLAR-QINGHAI-01"))
    assert good.rejections == []
    assert good.obligations[0][1]["obligation_id"] == "m:m1"
    forged = run(event(METER_TOPIC, b"PPA-CN-0001", value, "DC-GUIAN-04"))
    (rejected,) = forged.rejections
    assert forged.obligations == []
    assert forged.seen_updates == {}  # a forgery cannot block the genuine event id
    assert (rejected["reason_code"], rejected["principal"]) == ("SIGNER_NOT_PARTY", "DC-GUIAN-04")
    assert rejected["original"] == value
    unsigned = run(event(METER_TOPIC, b"PPA-CN-0001", value))
    assert [(r["reason_code"], r["principal"]) for r in unsigned.rejections] == [
        ("UNSIGNED_EVENT", None)
    ]
    # a verified event that validation refuses still names who sent it
    late = codec.encode("MeterReading", meter() | {"contract_id": "PPA-NONE"})
    refused = run(event(METER_TOPIC, b"PPA-NONE", late, "SOLAR-QINGHAI-01")).rejections
    assert [(r["reason_code"], r["principal"]) for r in refused] == [
        ("UNKNOWN_CONTRACT", "SOLAR-QINGHAI-01")
    ]


# Headers as clients give them, and key files.


def test_header_pairs_accepts_what_kafka_clients_give() -> None:
    assert header_pairs(None) == ()
    assert header_pairs([("a", b"1"), ("b", None)]) == (("a", b"1"), ("b", b""))
    assert header_pairs({"a": b"1", "b": "two"}) == (("a", b"1"), ("b", b"two"))
    assert header_pairs([(b"a", b"1")]) == (("a", b"1"),)


def test_private_key_files_pem_base64_hex() -> None:
    key = KEYS["SOLAR-QINGHAI-01"]
    public = public_key_raw(key)
    assert public_key_raw(load_private_key(private_key_pem(key))) == public
    assert public_key_raw(load_private_key(base64.b64encode(SEED) + b"\n")) == public
    assert public_key_raw(load_private_key(SEED.hex().encode())) == public
    for bad in [b"", b"not a key", base64.b64encode(bytes(31)),
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"]:  # fmt: skip
        with pytest.raises(InputError):
            load_private_key(bad)


# Reference data: the key and the policy.


def test_public_keys_are_checked_and_stored_as_base64() -> None:
    data = load_default_refdata().to_data()
    raw = public_key_raw(KEYS["DC-GUIAN-04"])
    data["participants"][0]["public_key"] = raw.hex().upper()
    ref = parse_refdata(data)
    first = next(iter(ref.participants.values()))
    assert first.public_key == base64.b64encode(raw).decode()
    for bad, why in [(base64.b64encode(bytes(31)).decode(), "32 bytes"),
                     ("not-base64!", "neither base64 nor hex")]:  # fmt: skip
        data["participants"][0]["public_key"] = bad
        with pytest.raises(RefdataError, match=why):
            parse_refdata(data)


def test_the_policy_travels_with_the_records_and_only_when_set() -> None:
    default = load_default_refdata()
    assert not default.policy.require_signed_events
    assert all(r.record_type != "clearing.RefdataPolicy" for r in default.to_records())
    records = list(STRICT.to_records())
    (policy,) = [r for r in records if r.record_type == "clearing.RefdataPolicy"]
    assert (policy.topic, policy.key, policy.value) == (
        "clearing.refdata.policy", "policy",
        {"require_signed_events": True, "dedup_window_days": 35},
    )  # fmt: skip
    rebuilt = ReferenceData.from_records(
        [(r.record_type, r.key, r.value) for r in records], version="x"
    )
    assert rebuilt.policy.require_signed_events
    assert rebuilt.digest == STRICT.digest != OPEN.digest
    # a tombstone on the policy key restores the defaults
    rows = [(r.record_type, r.key, r.value) for r in records]
    back = ReferenceData.from_records(
        [*rows, ("clearing.RefdataPolicy", "policy", None)], version="x"
    )
    assert not back.policy.require_signed_events
    assert back.digest == OPEN.digest
    # keys are part of the digest; an unset key leaves it as it was
    assert OPEN.digest != default.digest
    no_keys = default.to_data()
    assert parse_refdata(no_keys).digest == default.digest


def test_the_documented_test_vector_holds() -> None:
    text = (REPO / "docs/identity.md").read_text()
    field = dict(re.findall(r"^(public key \(base64\)|message \(hex\)|signature \(hex\)):\s+(\S+)$",
                            text, flags=re.MULTILINE))  # fmt: skip
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    message = signed_message("clearing.events.meter", b"PPA-CN-0001", b"example")
    assert field["message (hex)"] == message.hex()
    assert field["public key (base64)"] == base64.b64encode(public_key_raw(key)).decode()
    headers = sign_event(key, "X", "clearing.events.meter", b"PPA-CN-0001", b"example")
    assert field["signature (hex)"] == dict(headers)[SIGNATURE_HEADER].hex()
