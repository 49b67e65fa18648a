"""Monitoring (issue 19): ``promtool`` accepts the alert rules, every alert fires on one
set of series and stays quiet on another (``promtool test rules``), a rule changed
under its tests fails them; the Grafana dashboard has the web dashboard's panels on
the Prometheus datasource; every metric a rule or a panel names is exported by a
real worker."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support.pipeline import REPO, scrape_text, wait_until, worker

RULES = REPO / "infra/prometheus/alerts.yml"
UNIT_TESTS = REPO / "infra/prometheus/alerts.test.yml"
GRAFANA = REPO / "infra/grafana/clearing.json"
PROMTOOL = shutil.which("promtool") or "promtool"  # make test installs it (infra/ensure-tools.sh)
METRIC = re.compile(r"\b((?:clearing|process)_[a-z0-9_]+)\b")


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120, check=False)  # fmt: skip


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_accepts_the_rules() -> None:
    checked = promtool("check", "rules", str(RULES), cwd=REPO)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout


def test_every_alert_fires_and_stays_quiet_in_the_unit_tests() -> None:
    tested = promtool("test", "rules", str(UNIT_TESTS), cwd=UNIT_TESTS.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    cases: dict[str, list[bool]] = {}
    for test in yaml.safe_load(UNIT_TESTS.read_text())["tests"]:
        for check in test["alert_rule_test"]:
            cases.setdefault(check["alertname"], []).append(bool(check["exp_alerts"]))
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    assert len(alerts) >= 9
    assert {name: sorted(set(kinds)) for name, kinds in cases.items()} == {
        name: [False, True] for name in alerts}  # fmt: skip


def test_a_rule_changed_under_its_unit_tests_fails_them(tmp_path: Path) -> None:
    text = RULES.read_text().replace("clearing:consumer_lag_records:max > 100000",
                                     "clearing:consumer_lag_records:max > 1000000")  # fmt: skip
    assert text != RULES.read_text()
    (tmp_path / "alerts.yml").write_text(text)
    shutil.copy(UNIT_TESTS, tmp_path / "alerts.test.yml")
    tested = promtool("test", "rules", "alerts.test.yml", cwd=tmp_path)
    assert tested.returncode != 0
    assert "ClearingConsumerLagHigh fires" in tested.stdout + tested.stderr


def panels() -> list[dict[str, Any]]:
    return list(json.loads(GRAFANA.read_text())["panels"])


def test_the_grafana_dashboard_has_the_web_dashboards_panels_on_prometheus() -> None:
    rows = [p["title"] for p in panels() if p["type"] == "row"]
    assert rows == ["Health", "Cycles", "Throughput", "Dead-letter queue",
                    "Settlement and finality", "Consumer lag"]  # fmt: skip
    shown = [p for p in panels() if p["type"] != "row"]
    assert all(p["datasource"] == {"type": "prometheus", "uid": "${datasource}"} for p in shown)
    assert all(p["targets"] and all(t["expr"] for t in p["targets"]) for p in shown)
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids))


def exported(text: str) -> set[str]:
    """The sample names a /metrics page declares (``# TYPE``), children or not."""
    suffixes = {"counter": ("_total", "_created"), "gauge": ("",),
                "histogram": ("_bucket", "_sum", "_count", "_created")}  # fmt: skip
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        base = name.removesuffix("_total") if kind == "counter" else name
        names |= {base + suffix for suffix in suffixes.get(kind, ("",))}
    return names


def test_every_metric_a_rule_or_a_panel_names_is_exported_by_a_real_worker(
    bootstrap: str, state: Path
) -> None:
    exprs = [rule["expr"] for rule in rules()]
    exprs += [t["expr"] for p in panels() for t in p.get("targets", [])]
    named = {m for expr in exprs for m in METRIC.findall(expr)}
    assert {"clearing_consumer_group_status", "clearing_cycle_gross_minor"} <= named
    with worker(bootstrap, state) as process:
        page = wait_until("the worker's metrics", lambda: scrape_text(process.metrics_url))
    assert named - exported(page) == set()
