"""The bank side against the real broker: batches tail, export, ack."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka import Producer

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.encoding.jsonrecord import to_json
from clearing_core.exports import pacs009
from clearing_services.cli.ack import ack
from clearing_services.cli.bank import batches
from clearing_services.cli.export import export
from clearing_services.kafka.clients import admin_client, produce_all, producer_config, read_topic
from clearing_services.kafka.topics import ACKS_TOPIC, batch_topic, create_topics, load_topic_plan
from tests.core.exports.test_exports import make_batch

HOUSE_BIC = "ABCDUS33"


@pytest.fixture
def rails(kafka_bootstrap: str, codec: SingleObjectCodec, unique: str) -> dict[str, Any]:
    """Two rails of this test, each with two batches on its topic."""
    token_rail, bank_rail = f"bk{unique}-tok", f"bk{unique}-iso"
    create_topics(
        admin_client(kafka_bootstrap), load_topic_plan().for_rails([token_rail, bank_rail])
    )
    made: dict[str, Any] = {}
    for seq in (1, 2):
        made.setdefault(token_rail, []).append(make_batch(
            token_rail, "CNH", "CNY", 2, 6,
            [("SOLAR", "LEASECO", 400_000 * seq, None, None), ("DC", "SOLAR", 7, None, None)],
            fmt="TOKEN_BATCH", token="CNHT", seq=seq,
        ))  # fmt: skip
        made.setdefault(bank_rail, []).append(make_batch(
            bank_rail, "USD", "USD", 2, 2,
            [("DC", "CLEARING_HOUSE", 1_234 * seq, "ABCDCNBJ", None),
             ("CLEARING_HOUSE", "GPU", 1_234 * seq, None, None)],
            seq=seq, payee_ids={"GPU": ("ABCDSGSG", None)},
        ))  # fmt: skip
    producer = Producer(producer_config(kafka_bootstrap))
    for rail, items in made.items():
        encoded = [(b["batch_id"].encode(), codec.encode("SettlementBatch", b)) for b in items]
        produce_all(producer, batch_topic(rail), encoded)
    return made


def invoke(bootstrap: str, command: Any, *args: str) -> Any:
    return CliRunner().invoke(command, list(args), env={"KAFKA_BOOTSTRAP": bootstrap})


def test_tail_json_shows_each_rails_batches(kafka_bootstrap: str, rails: dict[str, Any]) -> None:
    for rail, made in rails.items():
        result = invoke(kafka_bootstrap, batches, "tail", "--rail", rail, "--json")
        assert result.exit_code == 0, result.output
        shown = json.loads(result.stdout)
        assert shown == {"rail": rail, "batches": [to_json(b) for b in made]}
        last = invoke(kafka_bootstrap, batches, "tail", "--rail", rail, "--json", "--last", "1")
        assert [b["batch_id"] for b in json.loads(last.stdout)["batches"]] == [made[-1]["batch_id"]]
    token_rail = next(r for r in rails if r.endswith("-tok"))
    table = invoke(kafka_bootstrap, batches, "tail", "--rail", token_rail)
    assert table.exit_code == 0, table.output
    assert "4,000.000000" in table.stdout
    assert "8,000.070000" in table.stdout
    missing = invoke(kafka_bootstrap, batches, "tail", "--rail", token_rail + "-none")
    assert missing.exit_code == 2
    assert "no batch topic" in missing.stderr


def test_export_writes_xml_and_token_json(
    kafka_bootstrap: str, rails: dict[str, Any], tmp_path: Path
) -> None:
    token_rail, bank_rail = sorted(rails, key=lambda r: not r.endswith("-tok"))
    bank_batch = rails[bank_rail][1]
    out = tmp_path / "pacs009.xml"
    result = invoke(kafka_bootstrap, export, "iso20022", bank_batch["batch_id"], "--out", str(out),
                    "--clearing-house-bic", HOUSE_BIC)  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = pacs009.parse(out.read_bytes()).ficdt_trf
    assert doc.grp_hdr.msg_id == bank_batch["batch_id"]
    assert str(doc.grp_hdr.ctrl_sum) == "49.36"
    assert [t.cdtr.fin_instn_id.bicfi for t in doc.cdt_trf_tx_inf] == [HOUSE_BIC, "ABCDSGSG"]
    to_stdout = invoke(kafka_bootstrap, export, "iso20022", bank_batch["batch_id"],
                       "--clearing-house-bic", HOUSE_BIC)  # fmt: skip
    assert to_stdout.exit_code == 0, to_stdout.output
    assert to_stdout.stdout_bytes == out.read_bytes()

    token_batch = rails[token_rail][0]
    refused = invoke(kafka_bootstrap, export, "iso20022", token_batch["batch_id"])
    assert refused.exit_code == 2
    assert f"clearing export token {token_batch['batch_id']}" in refused.stderr
    out_json = tmp_path / "token.json"
    result = invoke(
        kafka_bootstrap, export, "token", token_batch["batch_id"], "--out", str(out_json)
    )
    assert result.exit_code == 0, result.output
    document = json.loads(out_json.read_text())
    assert document["token"] == "CNHT"
    assert document["decimals"] == 6
    assert [t["value"] for t in document["transfers"]] == ["4000000000", "70000"]
    assert document["total"] == "4000070000"

    unknown = invoke(kafka_bootstrap, export, "token", f"{token_rail}-CNH-00000099")
    assert unknown.exit_code == 2
    assert "not found" in unknown.stderr


def _acks_of(bootstrap: str, codec: SingleObjectCodec, batch_ids: set[str]) -> list[Any]:
    records = read_topic(bootstrap, ACKS_TOPIC, "test-bank-acks")
    decoded = [codec.decode(r.value).record for r in records]
    return [a for a in decoded if a["batch_id"] in batch_ids]


def test_ack_file_sends_acks_that_read_back_equal(
    kafka_bootstrap: str, codec: SingleObjectCodec, rails: dict[str, Any], tmp_path: Path
) -> None:
    batch = next(iter(rails.values()))[0]
    first, second = batch["instructions"]
    lines = [
        {"batch_id": batch["batch_id"], "instruction_id": first["instruction_id"],
         "rail_id": batch["rail_id"], "status": "SETTLED", "bank_id": "BANK-1",
         "bank_reference": "REF-1", "acked_at": "2026-03-01T09:00:00.125Z"},
        {"batch_id": batch["batch_id"], "instruction_id": second["instruction_id"],
         "rail_id": batch["rail_id"], "status": "FAILED", "reason_code": "AM04",
         "reason": "insufficient funds", "bank_id": "BANK-1", "acked_at": 1772355600125},
    ]  # fmt: skip
    path = tmp_path / "acks.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    result = invoke(kafka_bootstrap, ack, str(path), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["sent"] == 2
    got = sorted(_acks_of(kafka_bootstrap, codec, {batch["batch_id"]}),
                 key=lambda a: a["instruction_id"])  # fmt: skip
    chain = {"transaction_hash": None, "block_number": None}  # a bank's ack: no chain
    expected = [
        {**lines[0], "reason_code": None, "reason": None, **chain},
        {**lines[1], "bank_reference": None, "acked_at": "2026-03-01T09:00:00.125Z", **chain},
    ]
    assert [to_json(a) for a in got] == expected

    csv_path = tmp_path / "acks.csv"
    csv_path.write_text(
        "batch_id,instruction_id,rail_id,status,reason_code,bank_id,acked_at\n"
        f"{batch['batch_id']}-csv,{first['instruction_id']},{batch['rail_id']},SETTLED,,B,"
        "1772355600125\n"
    )
    result = invoke(kafka_bootstrap, ack, str(csv_path))
    assert result.exit_code == 0, result.output
    (csv_ack,) = _acks_of(kafka_bootstrap, codec, {batch["batch_id"] + "-csv"})
    assert to_json(csv_ack)["acked_at"] == "2026-03-01T09:00:00.125Z"


def test_bad_ack_line_exits_2_and_sends_nothing(
    kafka_bootstrap: str, codec: SingleObjectCodec, rails: dict[str, Any], tmp_path: Path
) -> None:
    batch = next(iter(rails.values()))[1]
    good = {"batch_id": batch["batch_id"], "instruction_id": "x-1", "rail_id": batch["rail_id"],
            "status": "SETTLED", "bank_id": "B", "acked_at": 1}  # fmt: skip
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "status": "MAYBE"}) + "\n")
    result = invoke(kafka_bootstrap, ack, str(path))
    assert result.exit_code == 2
    message = result.stderr.strip()
    assert message.count("\n") == 0
    assert f"{path}:2:" in message
    assert "MAYBE" in message
    assert _acks_of(kafka_bootstrap, codec, {batch["batch_id"]}) == []


def test_tail_follow_prints_new_batches_one_json_line_each(
    kafka_bootstrap: str, codec: SingleObjectCodec, rails: dict[str, Any]
) -> None:
    rail = next(r for r in rails if r.endswith("-iso"))
    script = (
        "import sys; from clearing_services.cli.bank import batches; "
        "batches(sys.argv[1:], prog_name='clearing batches')"
    )
    args = ["tail", "--rail", rail, "--json", "--follow", "--last", "1"]
    env = {**os.environ, "KAFKA_BOOTSTRAP": kafka_bootstrap}
    with subprocess.Popen(
        [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True, env=env
    ) as proc:
        try:
            assert proc.stdout is not None
            first = json.loads(proc.stdout.readline())
            assert first["batch_id"] == rails[rail][-1]["batch_id"]
            new = make_batch(rail, "USD", "USD", 2, 2, [("A", "B", 9, "ABCDUS33", None)], seq=3)
            produce_all(
                Producer(producer_config(kafka_bootstrap)), batch_topic(rail),
                [(new["batch_id"].encode(), codec.encode("SettlementBatch", new))],
            )  # fmt: skip
            second = json.loads(proc.stdout.readline())
            assert second == to_json(new)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
