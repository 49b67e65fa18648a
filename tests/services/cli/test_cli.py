"""CLI contracts that need no broker: help everywhere, one-line errors, settings."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from clearing_core.errors import InputError
from clearing_services.settings import load_settings
from tests.conftest import REPO

COMMANDS = [
    [], ["broker"], ["broker", "start"], ["broker", "stop"], ["broker", "status"],
    ["broker", "logs"], ["broker", "fetch"], ["topics"], ["topics", "create"],
    ["topics", "list"], ["schemas", "list"], ["demo"], ["produce"], ["cycle"],
    ["cycle", "close"], ["worker"], ["refdata"], ["refdata", "publish"], ["replay"], ["net"],
    ["batches"], ["batches", "tail"], ["export"], ["export", "iso20022"], ["export", "token"],
    ["ack"], ["lag"], ["dashboard"], ["keys"], ["keys", "generate"], ["keys", "public"],
    ["security"], ["security", "provision"],
]  # fmt: skip


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clearing_services.cli", *args],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "clearing")
def test_every_command_has_help(command: list[str]) -> None:
    result = _run(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


def test_schemas_list_json_names_every_contract_type() -> None:
    result = _run("schemas", "list", "--json")
    names = {s["name"] for s in json.loads(result.stdout)["schemas"]}
    assert {"clearing.MeterReading", "clearing.SettlementBatch", "clearing.Rejected"} <= names
    assert all(len(s["fingerprint"]) == 16 for s in json.loads(result.stdout)["schemas"])


def test_bad_setting_is_one_line_error() -> None:
    import os

    result = _run("broker", "status", env={**os.environ, "CLEARING_BROKER_PORT": "ninety"})
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == "error: CLEARING_BROKER_PORT='ninety' is not an integer"


def test_settings_from_environment() -> None:
    cfg = load_settings({"KAFKA_BOOTSTRAP": "10.0.0.1:9092", "CI": "true"})
    assert cfg.bootstrap() == "10.0.0.1:9092"
    assert cfg.ci
    local = load_settings({"CLEARING_BROKER_PORT": "19092"})
    assert local.bootstrap() == "127.0.0.1:19092"
    assert local.state_dir == REPO / ".run"
    assert local.ingest_batch_max == 50_000
    assert load_settings({"CLEARING_INGEST_BATCH_MAX": "5000"}).ingest_batch_max == 5_000
    for bad in ("0", "100001"):
        with pytest.raises(
            InputError, match=r"CLEARING_INGEST_BATCH_MAX=\d+ is outside 1..100,000"
        ):
            load_settings({"CLEARING_INGEST_BATCH_MAX": bad})


def test_codec_benchmark_prints_ratios_as_json() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "codec.py"), "--records", "3000", "--repeats", "1"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert last["records"] == 3000
    assert last["encode_ratio_vs_fastavro"] > 0
    assert last["decode_ratio_vs_fastavro"] > 0
