"""The operators' dashboard end to end: a real pipeline on a broker of its own, the
dashboard server as a process, and the page rendered by headless Chromium; every
figure the page shows is checked against the topics it comes from."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from clearing_core.encoding.codec import SingleObjectCodec
from tests.services.settlement.test_token_settlement import ADDRESS
from tests.support.brokers import free_port
from tests.support.chains import deployed
from tests.support.events import meter_reading, payment
from tests.support.pipeline import (
    REPO,
    batches,
    clearing,
    close_cycle,
    decoded,
    env,
    send_events,
    stop_process,
    wait_for_reports,
    wait_until,
    worker,
)

pytestmark = pytest.mark.own_broker
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


class Figures(HTMLParser):
    """Every element with a data-testid: its text and its data-value."""

    def __init__(self) -> None:
        super().__init__()
        self.found: dict[str, dict[str, str]] = {}
        self.stack: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        testid = named.get("data-testid")
        if testid:
            self.found[testid] = {"text": "", "value": named.get("data-value") or ""}
        if tag not in {"br", "img", "input", "meta", "link", "circle", "line", "polyline"}:
            self.stack.append((tag, testid))

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            open_tag, _ = self.stack.pop()
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        for _tag, testid in self.stack:
            if testid:
                self.found[testid]["text"] += data


def render(url: str, profile: Path, screenshot: Path | None = None) -> dict[str, dict[str, str]]:
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
            "--virtual-time-budget=8000"]  # fmt: skip
    if screenshot is not None:
        args += [f"--screenshot={screenshot}", "--window-size=1400,1000", url]
        subprocess.run(args, capture_output=True, timeout=120, check=False)
        return {}
    done = subprocess.run([*args, "--dump-dom", url], capture_output=True, text=True,
                          timeout=120, check=True)  # fmt: skip
    parser = Figures()
    parser.feed(done.stdout)
    return parser.found


def number(text: str) -> int:
    return int(text.replace(",", "").strip())


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def api(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/api/state", timeout=10) as response:
        value: dict[str, Any] = json.loads(response.read())
        return value


def test_the_page_shows_what_the_topics_hold(
    bootstrap: str, state: Path, codec: SingleObjectCodec, tmp_path: Path
) -> None:
    assert Path(CHROMIUM).exists(), "headless Chromium is needed: apt-get install -y chromium"
    deployed = clearing(bootstrap, state, "settle", "--rail", "cnh-stable", "--deploy")
    assert deployed.returncode == 0, deployed.stderr  # the token rail settles on chain
    with worker(bootstrap, state):
        send_events(bootstrap, codec, "meter", [
            meter_reading("m-1", 10_000_000),
            meter_reading("m-2", 7, contract_id="PPA-UNKNOWN"),  # bad: unknown contract
        ])  # fmt: skip
        send_events(bootstrap, codec, "payment", [
            payment("p-1", "DC-SHENZHEN-01", "LEASECO-HK-01", "FINANCE_LEASE_RENT", 120_000),
            payment("p-2", "LEASECO-HK-01", "SOLAR-QINGHAI-07", "OM_FEE", 50_000),
        ])  # fmt: skip
        wait_until("the rejection", lambda: decoded(bootstrap, codec, "clearing.dlq",
                                                    f"d-{time.time_ns()}"))  # fmt: skip
        close_cycle(bootstrap, state, "CNH")
        (report,) = wait_for_reports(bootstrap, codec, "CNH", 1)
        assert report["batch_ids"]

        # what the topics hold
        rejected = decoded(bootstrap, codec, "clearing.dlq", f"d-{time.time_ns()}")
        reasons = Counter(r["reason_code"] for r in rejected)
        rails = sorted({b.rsplit("-CNH-", 1)[0] for b in report["batch_ids"]})
        batch_records = {bid: b for rail in rails for bid, b in batches(bootstrap, codec,
                         rail).items()}  # fmt: skip
        assert set(report["batch_ids"]) <= set(batch_records)

        with dashboard_server(bootstrap, state) as url:
            groups = {"clearing-ingest", "clearing-netting"}
            wait_until("the dashboard's state", lambda: _ready(api(url), report, groups), 90)
            figures = wait_until("the page's figures",
                                 lambda: _rendered(url, tmp_path, report), 90)  # fmt: skip
            snapshot = api(url)
            house = house_balance(state)
            render(url + "/", tmp_path / "profile-shot", tmp_path / "dashboard.png")

    cid = report["cycle_id"]
    assert number(figures[f"cycle-{cid}-gross"]["text"]) == report["gross_minor"]
    assert number(figures[f"cycle-{cid}-net"]["text"]) == report["net_minor"]
    assert int(figures[f"cycle-{cid}-gross"]["value"]) == report["gross_minor"]
    assert (
        figures[f"cycle-{cid}-efficiency"]["text"] == f"{100 * report['netting_efficiency']:.1f}%"
    )
    assert f"chart-{report['currency']}" in figures
    assert f"chart-{report['currency']}-gross_minor" in figures

    for reason, count in reasons.items():
        assert number(figures[f"dlq-{reason}"]["text"]) == count
    assert number(figures["dlq-total"]["text"]) == len(rejected)
    assert {k[4:] for k in figures if k.startswith("dlq-") and k != "dlq-total"} == set(reasons)

    for batch_id in report["batch_ids"]:
        record = batch_records[batch_id]
        assert figures[f"batch-{batch_id}-id"]["text"] == batch_id
        assert number(figures[f"batch-{batch_id}-instructions"]["text"]) == (
            record["instruction_count"])  # fmt: skip
        assert number(figures[f"batch-{batch_id}-control"]["text"]) == record["control_sum_minor"]
    for rail in rails:
        assert f"rail-{rail}" in figures

    check_finality(figures, report, batch_records, house)

    lag_rows = {k for k in figures if k.startswith("lag-")}
    for group in ("clearing-ingest", "clearing-netting"):
        assert f"lag-{group}" in lag_rows
        assert figures[f"lag-{group}-status"]["text"] in {"OK", "WARN", "ERR"}
    netting = next(g for g in snapshot["lag"]["groups"] if g["group"] == "clearing-netting")
    for p in netting["partitions"]:
        row = f"lag-clearing-netting-{p['topic']}-{p['partition']}"
        assert figures[f"{row}-status"]["text"] in {"OK", "WARN", "STALL", "STOP", "REWIND"}
        assert number(figures[f"{row}-logend"]["text"]) >= 0

    for topic in ("clearing.events.meter", "clearing.events.payment"):
        assert f"rate-{topic}" in figures
        assert number(figures[f"logend-{topic}"]["text"]) >= 2
    assert not any(k.startswith("lag-clearing-dashboard-") for k in figures)


def check_finality(
    figures: dict[str, dict[str, str]], report: dict[str, Any],
    batch_records: dict[str, dict[str, Any]], house: int,
) -> None:  # fmt: skip
    """The token rail settled on chain, the bank rail waits for its bank; the house's
    balance is the chain's."""
    for batch_id in report["batch_ids"]:
        batch = batch_records[batch_id]
        row = f"finality-{report['cycle_id']}-{batch['rail_id']}"
        count, token = batch["instruction_count"], batch["rail_id"] == "cnh-stable"
        assert number(figures[f"{row}-settled"]["text"]) == (count if token else 0)
        assert number(figures[f"{row}-pending"]["text"]) == (0 if token else count)
        assert figures[f"{row}-state"]["text"] == ("FINAL" if token else "PENDING")
    assert figures["chain-cnh-stable-balance"]["value"] == str(house)
    assert figures["chain-cnh-stable-address"]["text"] == ADDRESS["CLEARING_HOUSE"]


def house_balance(state: Path) -> int:
    """The clearing house's CNHT balance, read from the chain directly."""
    _, _, token = deployed(state)
    return int(token.functions.balanceOf(ADDRESS["CLEARING_HOUSE"]).call())


def _ready(snapshot: dict[str, Any], report: dict[str, Any], groups: set[str]) -> bool:
    seen = {g["group"] for g in snapshot["lag"]["groups"]}
    token_final = any(
        r["rail_id"] == "cnh-stable" and r["pending"] == 0 and r["settled"] > 0
        for c in snapshot["finality"] if c["cycle_id"] == report["cycle_id"] for r in c["rails"]
    )  # fmt: skip
    cycles = snapshot["cycles"].get(report["currency"], [])
    shown = {b["batch_id"] for rows in snapshot["batches"].values() for b in rows}
    return (
        groups <= seen
        and any(c["cycle_id"] == report["cycle_id"] for c in cycles)
        and set(report["batch_ids"]) <= shown
        and snapshot["dlq_total"] > 0
        and all(t["rate"] is not None for t in snapshot["throughput"].values())
        and token_final
        and any("balance_units" in c for c in snapshot["chain"])
    )


def _rendered(url: str, tmp: Path, report: dict[str, Any]) -> dict[str, dict[str, str]] | None:
    figures = render(url + "/", tmp / f"profile-{time.time_ns()}")
    return figures if f"cycle-{report['cycle_id']}-gross" in figures else None


def dashboard_server(bootstrap: str, state: Path) -> Any:
    from contextlib import contextmanager

    @contextmanager
    def run() -> Iterator[str]:
        port = free_port()
        log = (state / "dashboard.log").open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", "clearing_services.operations.dashboard", "--port", str(port),
             "--bootstrap", bootstrap, "--interval", "1"],
            env=env(bootstrap, state), cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until("the dashboard server", lambda: _answers(url + "/api/health"), 60)
            yield url
        finally:
            stop_process(process)
            log.close()

    return run()


def test_the_command_documents_itself() -> None:
    from click.testing import CliRunner

    from clearing_services.cli.dashboard import dashboard

    done = CliRunner().invoke(dashboard, ["--help"])
    assert done.exit_code == 0
    assert "--port" in done.output
    assert "--host" in done.output
