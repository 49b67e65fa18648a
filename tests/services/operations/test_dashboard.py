"""The operators' dashboard end to end: a real pipeline on a broker of its own, the
dashboard server as a process, and the page rendered by headless Chromium; every
figure the page shows is checked against the topics it comes from, and every amount's
text against ``clearing_core.operations.money_format`` (the page formats in JavaScript).
The module has a broker of its own and reference data of its own: two participants get
net debit caps, one of them tight enough for the cycle to defer an obligation."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from fractions import Fraction
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.operations.money_format import format_amount
from clearing_core.refdata import ReferenceData
from clearing_core.refdata.loader import dump_refdata_yaml, parse_yaml
from clearing_services.kafka.refdata import load_refdata_from_topics
from tests.services.settlement.test_token_settlement import ADDRESS
from tests.support.brokers import free_port
from tests.support.chains import deployed
from tests.support.events import meter_reading, payment
from tests.support.pipeline import (
    REFDATA_FILE,
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
CHROMIUM_TIMEOUT_SECONDS = 120
API_TIMEOUT_SECONDS = 10
HEALTH_TIMEOUT_SECONDS = 5
READY_TIMEOUT_SECONDS = 90
SERVER_START_TIMEOUT_SECONDS = 60
SCREENSHOT_WINDOW = "1400,1800"  # docs/dashboard.png is taken at this size
# Net debit caps (fen): DC-SHENZHEN-01 owes 350,000 for energy and 120,000 of rent, so
# 400,000 makes the cycle defer; LEASECO-HK-01 pays 50,000 against 100,000.
CAPS = {"DC-SHENZHEN-01": 400_000, "LEASECO-HK-01": 100_000, "SOLAR-QINGHAI-07": 1_000_000}


@pytest.fixture(scope="module")
def refdata_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pipeline's reference data with CNH net debit caps on three participants."""
    data = parse_yaml(REFDATA_FILE.read_text())
    for participant in data["participants"]:
        for account in participant["accounts"]:
            if account["currency"] == "CNH" and participant["participant_id"] in CAPS:
                account["net_debit_cap_minor"] = CAPS[participant["participant_id"]]
    path = tmp_path_factory.mktemp("dashboard-refdata") / "refdata.yaml"
    path.write_text(dump_refdata_yaml(data))
    return path


class Figures(HTMLParser):
    """Every element with a data-testid: its text and its data-value."""

    def __init__(self) -> None:
        super().__init__()
        self.found: dict[str, dict[str, str]] = {}  # in document order
        self.stack: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        testid = named.get("data-testid")
        if testid:
            self.found[testid] = {"text": "", "value": named.get("data-value") or "",
                                  "title": named.get("title") or ""}  # fmt: skip
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
        args += [f"--screenshot={screenshot}", f"--window-size={SCREENSHOT_WINDOW}", url]
        subprocess.run(args, capture_output=True, timeout=CHROMIUM_TIMEOUT_SECONDS, check=False)
        return {}
    done = subprocess.run([*args, "--dump-dom", url], capture_output=True, text=True,
                          timeout=CHROMIUM_TIMEOUT_SECONDS, check=True)  # fmt: skip
    parser = Figures()
    parser.feed(done.stdout)
    return parser.found


def number(text: str) -> int:
    return int(text.replace(",", "").strip())


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=HEALTH_TIMEOUT_SECONDS) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def api(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/api/state", timeout=API_TIMEOUT_SECONDS) as response:
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
        rails = sorted({b.rsplit("-CNH-", 1)[0] for b in report["batch_ids"]})
        batch_records = {bid: b for rail in rails for bid, b in batches(bootstrap, codec,
                         rail).items()}  # fmt: skip
        assert set(report["batch_ids"]) <= set(batch_records)
        cycle = (report["currency"], report["cycle_seq"])
        held = decoded(bootstrap, codec, "clearing.positions", f"p-{time.time_ns()}")
        positions = [p for p in held if (p["currency"], p["cycle_seq"]) == cycle]
        refdata = load_refdata_from_topics(bootstrap, codec, f"r-{time.time_ns()}")

        with dashboard_server(bootstrap, state) as url:
            groups = {"clearing-ingest", "clearing-netting"}
            wait_until("the dashboard's state", lambda: _ready(api(url), report, groups),
                       READY_TIMEOUT_SECONDS)  # fmt: skip
            figures = wait_until("the page's figures", lambda: _rendered(url, tmp_path, report),
                                 READY_TIMEOUT_SECONDS)  # fmt: skip
            snapshot = api(url)
            house = house_balance(state)
            render(url + "/", tmp_path / "profile-shot", tmp_path / "dashboard.png")

    assert report["deferred_count"] > 0, "the caps were meant to defer an obligation"
    check_cycle(figures, report, refdata)
    check_dlq(figures, rejected)
    check_batches(figures, report, batch_records, refdata)
    check_liquidity(figures, positions, refdata)
    check_finality(figures, report, batch_records, house)
    check_health(figures, snapshot, rejected, report, batch_records)

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


def check_amount(
    figure: dict[str, str], minor: int, exponent: int, unit: str, what: str = "minor units"
) -> None:  # fmt: skip
    """The text in units, the exact integer in data-value and in the title."""
    assert figure["text"] == format_amount(minor, exponent, unit), figure
    assert int(figure["value"]) == minor, figure
    assert figure["title"].startswith(f"{minor} {what}"), figure


def check_cycle(
    figures: dict[str, dict[str, str]], report: dict[str, Any], refdata: ReferenceData
) -> None:  # fmt: skip
    """Gross, net, deferred and carried in CNH units; a chart whose top tick covers the
    series, with short labels."""
    cid, currency = report["cycle_id"], report["currency"]
    exponent = refdata.currencies[currency].minor_exponent
    check_amount(figures[f"cycle-{cid}-gross"], report["gross_minor"], exponent, currency)
    check_amount(figures[f"cycle-{cid}-net"], report["net_minor"], exponent, currency)
    check_amount(figures[f"cycle-{cid}-deferred-value"], report["deferred_minor"], exponent,
                 currency)  # fmt: skip
    carried = report["carried_in_minor"] + report["failed_carried_minor"]
    check_amount(figures[f"cycle-{cid}-carried"], carried, exponent, currency)
    assert number(figures[f"cycle-{cid}-deferred"]["text"]) == report["deferred_count"]
    assert (
        figures[f"cycle-{cid}-efficiency"]["text"] == f"{100 * report['netting_efficiency']:.1f}%"
    )
    assert f"chart-{currency}" in figures
    assert f"chart-{currency}-gross_minor" in figures
    ticks = [f for k, f in figures.items() if k.startswith(f"chart-{currency}-tick-")]
    assert int(ticks[-1]["value"]) >= report["gross_minor"] > int(ticks[-2]["value"])
    assert all(re.fullmatch(r"\d{1,3}(\.\d{1,2})?[KMBT]?", t["text"]) for t in ticks), ticks


def check_dlq(figures: dict[str, dict[str, str]], rejected: list[dict[str, Any]]) -> None:
    """Counts by reason, each with the command that shows its dead letters."""
    reasons = Counter(r["reason_code"] for r in rejected)
    for reason, count in reasons.items():
        assert number(figures[f"dlq-{reason}"]["text"]) == count
        assert figures[f"dlq-{reason}-command"]["text"] == f"clearing dlq show --reason {reason}"
    assert number(figures["dlq-total"]["text"]) == len(rejected)
    shown = {k[len("dlq-row-") :] for k in figures if k.startswith("dlq-row-")}
    assert shown == set(reasons)


def check_batches(
    figures: dict[str, dict[str, str]], report: dict[str, Any],
    batch_records: dict[str, dict[str, Any]], refdata: ReferenceData,
) -> None:  # fmt: skip
    """Control sums in currency units and in the rail's units (CNHT has 6 decimals)."""
    for batch_id in report["batch_ids"]:
        record = batch_records[batch_id]
        rail = refdata.rails[record["rail_id"]]
        assert figures[f"batch-{batch_id}-id"]["text"] == batch_id
        assert number(figures[f"batch-{batch_id}-instructions"]["text"]) == (
            record["instruction_count"])  # fmt: skip
        check_amount(
            figures[f"batch-{batch_id}-control"],
            record["control_sum_minor"],
            refdata.currencies[record["currency"]].minor_exponent,
            record["currency"],
        )
        check_amount(
            figures[f"batch-{batch_id}-control-rail"],
            record["control_sum_rail_units"],
            rail.decimals,
            rail.token_symbol or rail.currency,
            "rail units",
        )
        assert f"rail-{record['rail_id']}" in figures  # fmt: skip


def check_liquidity(
    figures: dict[str, dict[str, str]], positions: list[dict[str, Any]], refdata: ReferenceData
) -> None:  # fmt: skip
    """Every position of the cycle, net debit against its cap, the most constrained first."""
    assert positions
    exponent = refdata.currencies["CNH"].minor_exponent
    for p in positions:
        row = f"liq-{p['participant_id']}-CNH"
        check_amount(figures[f"{row}-debit"], max(0, -p["net_minor"]), exponent, "CNH")
        check_amount(figures[f"{row}-deferred"], p["deferred_minor"], exponent, "CNH")
        cap = p["net_debit_cap_minor"]
        assert cap == CAPS.get(p["participant_id"])
        if cap is None:
            assert figures[f"{row}-cap"]["text"] == "no cap"
        else:
            check_amount(figures[f"{row}-cap"], cap, exponent, "CNH")
            used_bp = max(0, -p["net_minor"]) * 10_000 // cap
            assert figures[f"{row}-used"]["value"] == str(used_bp)
    order = [k[: -len("-id")] for k in figures if k.startswith("liq-") and k.endswith("-id")]
    assert sorted(order) == sorted(f"liq-{p['participant_id']}-CNH" for p in positions)

    def used(row: str) -> tuple[int, Fraction]:
        cap = figures[f"{row}-cap"]["value"]
        debit = int(figures[f"{row}-debit"]["value"])
        return (1, Fraction(0)) if not cap else (0, -Fraction(debit, int(cap)))

    assert [used(r) for r in order] == sorted(used(r) for r in order)
    assert order[0] == "liq-DC-SHENZHEN-01-CNH"  # it hit its cap: the cycle deferred its rent


def check_health(
    figures: dict[str, dict[str, str]], snapshot: dict[str, Any], rejected: list[dict[str, Any]],
    report: dict[str, Any], batch_records: dict[str, dict[str, Any]],
) -> None:  # fmt: skip
    """The strip at the top: it comes first on the page, and its figures are the topics'."""
    first = next(k for k in figures if k.startswith(("health", "liq-", "cycle-", "dlq-")))
    assert first.startswith("health")
    assert figures["health-status"]["value"] in {"OK", "WARN", "ERR"}
    assert figures["health-lag-status"]["value"] == snapshot["health"]["signals"]["lag"]
    for group in ("clearing-ingest", "clearing-netting"):
        assert figures[f"health-group-{group}"]["value"] in {"OK", "WARN", "ERR"}
    assert int(figures["health-dlq-total"]["value"]) == len(rejected)
    pending = sum(
        batch_records[b]["instruction_count"]
        for b in report["batch_ids"]
        if batch_records[b]["rail_id"] != "cnh-stable"
    )  # the bank never answers
    assert int(figures["health-pending"]["value"]) == pending
    assert int(figures["health-stalled-count"]["value"]) == len(snapshot["health"]["stalled"])
    assert int(figures["health-deferring"]["value"]) >= 1


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
    """The dashboard has read every topic the test checks, and the reference data."""
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
        and bool(snapshot["units"].get("currencies"))
        and any(r["cycle_seq"] == report["cycle_seq"] for r in snapshot["liquidity"]["rows"])
    )


def _rendered(url: str, tmp: Path, report: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The page's figures once it shows the cycle in units (empty until then)."""
    figures = render(url + "/", tmp / f"profile-{time.time_ns()}")
    gross = figures.get(f"cycle-{report['cycle_id']}-gross", {})
    return figures if gross.get("text", "").endswith(report["currency"]) else {}


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
            wait_until("the dashboard server", lambda: _answers(url + "/api/health"),
                       SERVER_START_TIMEOUT_SECONDS)  # fmt: skip
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
