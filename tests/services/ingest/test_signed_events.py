"""Signed events through a real broker and a real worker: with the reference data's
``require_signed_events`` on, a correctly signed event becomes its obligation, and a
forged, unsigned or altered one lands in clearing.dlq with its reason and the
original bytes (docs/identity.md). Events go in through the real
``clearing produce --sign-key`` where the CLI can make them, and through a plain
producer with hand-made headers where a forger would.

A broker of its own: the signed reference data it publishes requires signatures of
every event on the contract's topics, which must stay clear of the other tests."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka import Producer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.encoding.jsonrecord import to_json
from clearing_core.errors import InputError
from clearing_core.ingest.identify import (
    load_private_key,
    private_key_pem,
    public_key_raw,
    sign_event,
)
from clearing_core.refdata import load_refdata
from clearing_services.cli.keys import keys
from clearing_services.kafka.clients import producer_config
from clearing_services.kafka.topics import event_topic
from tests.support.events import meter_reading, payment
from tests.support.pipeline import (
    REPO,
    clearing,
    send_events,
    wait_for_records,
    worker,
)

SIGNED_REFDATA = REPO / "tests/data/signed-refdata.yaml"
pytestmark = pytest.mark.own_broker


@pytest.fixture(scope="module")
def refdata_file() -> Path:
    return SIGNED_REFDATA


def participant_key(participant: str) -> Ed25519PrivateKey:
    """The test-only key whose public half tests/data/signed-refdata.yaml holds."""
    seed = hashlib.sha256(f"clearing test key {participant}".encode()).digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


def key_file(folder: Path, participant: str) -> Path:
    path = folder / f"{participant}.key"
    if not path.exists():
        path.write_bytes(private_key_pem(participant_key(participant)))
    return path


def jsonl(folder: Path, name: str, kind: str, records: list[dict[str, Any]]) -> Path:
    path = folder / name
    lines = [json.dumps({"type": kind, **to_json(r)}) for r in records]
    path.write_text("\n".join(lines) + "\n")
    return path


def produce_raw(
    bootstrap: str, kind: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]
) -> None:
    producer = Producer(producer_config(bootstrap))
    producer.produce(event_topic(kind).topic, key=key, value=value, headers=headers)
    assert producer.flush(30) == 0


def test_the_test_keys_match_the_reference_data() -> None:
    refdata = load_refdata(SIGNED_REFDATA)
    assert refdata.policy.require_signed_events
    for participant in ("SOLAR-QINGHAI-07", "DC-SHENZHEN-01", "LEASECO-HK-01"):
        public = participant_key(participant).public_key().public_bytes_raw()
        assert refdata.participants[participant].public_key == base64.b64encode(public).decode()
    assert refdata.participants["GPUCLOUD-SG-02"].public_key is None


def test_keys_generate_writes_a_private_file_and_prints_the_public_key(tmp_path: Path) -> None:
    out = tmp_path / "solar.key"
    runner = CliRunner()
    args = ["generate", "--participant", "SOLAR-QINGHAI-07", "--out", str(out)]
    done = runner.invoke(keys, [*args, "--json"])
    assert done.exit_code == 0, done.output
    shown = json.loads(done.stdout)
    assert shown["participant_id"] == "SOLAR-QINGHAI-07"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    private = load_private_key(out.read_bytes())
    assert base64.b64encode(public_key_raw(private)).decode() == shown["public_key"]
    again = runner.invoke(keys, ["public", str(out), "--json"])
    assert json.loads(again.stdout)["public_key"] == shown["public_key"]
    refused = runner.invoke(keys, args)
    assert isinstance(refused.exception, InputError)
    assert "never overwritten" in str(refused.exception)


def test_signed_events_are_accepted_and_forgeries_refused(
    bootstrap: str, state: Path, tmp_path: Path, codec: SingleObjectCodec
) -> None:
    solar, dc = key_file(tmp_path, "SOLAR-QINGHAI-07"), key_file(tmp_path, "DC-SHENZHEN-01")

    def produce(path: Path, key: Path, signer: str) -> None:
        done = clearing(bootstrap, state, "produce", str(path), "--sign-key", str(key),
                        "--signer", signer, "--json")  # fmt: skip
        assert done.returncode == 0, done.stderr

    with worker(bootstrap, state):
        # genuine: the seller signs its own reading, the payer its own payment
        produce(jsonl(tmp_path, "good.jsonl", "meter", [meter_reading("ok-m1", 1_000_000)]),
                solar, "SOLAR-QINGHAI-07")  # fmt: skip
        good_payment = payment("ok-p1", "DC-SHENZHEN-01", "SOLAR-QINGHAI-07", "TRANSFER", 500)
        produce(jsonl(tmp_path, "pay.jsonl", "payment", [good_payment]), dc, "DC-SHENZHEN-01")
        # forged: the data centre (validly) signs a reading that claims to be the seller's
        produce(jsonl(tmp_path, "forged.jsonl", "meter", [meter_reading("bad-m1", 9_000_000)]),
                dc, "DC-SHENZHEN-01")  # fmt: skip
        # forged: the seller signs a payment "from" the leasing company to itself
        forged_payment = payment("bad-p1", "LEASECO-HK-01", "SOLAR-QINGHAI-07", "OM_FEE", 900)
        value = codec.encode("Payment", forged_payment)
        headers = sign_event(participant_key("SOLAR-QINGHAI-07"), "SOLAR-QINGHAI-07",
                             "clearing.events.payment", b"LEASECO-HK-01", value)  # fmt: skip
        produce_raw(bootstrap, "payment", b"LEASECO-HK-01", value, list(headers))
        # unsigned, under the policy
        send_events(bootstrap, codec, "meter", [meter_reading("bad-m2", 1_000)])
        # altered after signing: the energy changed on the way
        original = codec.encode("MeterReading", meter_reading("bad-m3", 1_000))
        headers = sign_event(participant_key("SOLAR-QINGHAI-07"), "SOLAR-QINGHAI-07",
                             "clearing.events.meter", b"PPA-QH07-SZ01", original)  # fmt: skip
        altered = codec.encode("MeterReading", meter_reading("bad-m3", 9_999_999))
        produce_raw(bootstrap, "meter", b"PPA-QH07-SZ01", altered, list(headers))

        dlq = wait_for_records(bootstrap, codec, "clearing.dlq", 4)
        obligations = [o for o in wait_for_records(bootstrap, codec, "clearing.obligations", 2)
                       if "obligation_id" in o]  # not the cycle markers  # fmt: skip

    assert sorted(o["obligation_id"].split(":", 1)[1] for o in obligations) == ["ok-m1", "ok-p1"]
    meter_ob = next(o for o in obligations if o["obligation_id"].endswith("ok-m1"))
    assert (meter_ob["debtor_id"], meter_ob["creditor_id"], meter_ob["amount_minor"]) == (
        "DC-SHENZHEN-01", "SOLAR-QINGHAI-07", 35_000,
    )  # fmt: skip
    by_event = {r["event_id"]: r for r in dlq}
    assert {e: r["reason_code"] for e, r in by_event.items()} == {
        "bad-m1": "SIGNER_NOT_PARTY", "bad-p1": "SIGNER_NOT_PARTY",
        "bad-m2": "UNSIGNED_EVENT", "bad-m3": "BAD_SIGNATURE",
    }  # fmt: skip
    assert by_event["bad-m1"]["message"] == (
        "signed by 'DC-SHENZHEN-01', but claims reporter 'SOLAR-QINGHAI-07'"
    )
    assert by_event["bad-m1"]["principal"] == "DC-SHENZHEN-01"
    assert "'SOLAR-QINGHAI-07'" in by_event["bad-p1"]["message"]
    assert "'LEASECO-HK-01'" in by_event["bad-p1"]["message"]
    assert by_event["bad-m3"]["principal"] is None
    assert by_event["bad-m3"]["original"] == altered
