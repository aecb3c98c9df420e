"""infra/prometheus and infra/grafana: valid, and naming only metrics Baton exports."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from httpx import ASGITransport, AsyncClient

from backend.app import create_app
from backend.core.settings import Settings
from kernel.metrics import series_names
from tests.metrics.helpers import ROOT, run_promtool

PROMETHEUS = ROOT / "infra" / "prometheus"
GRAFANA = ROOT / "infra" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
METRIC_NAME = re.compile(r"\b(?:baton|http)_[A-Za-z0-9_]+")


@pytest.fixture(scope="module")
async def exported_names(settings: Settings) -> set[str]:
    """Every series name the API's /metrics can show: Baton's registry and the
    instrumentator's defaults (created when the app serves its first request)."""
    app = create_app(settings)
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://baton.test") as c:
        await c.get("/no-such-route")
    return series_names(app.state.metrics_registry)


def test_prometheus_config_is_valid(tmp_path: Path) -> None:
    # The scrape config reads the API's token from secrets/metrics-token, which operators
    # create; check a copy that has one.
    for name in ("prometheus.yml", "alerts.yml"):
        shutil.copy(PROMETHEUS / name, tmp_path / name)
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "metrics-token").write_text("token\n")
    output = run_promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert "SUCCESS" in output
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert {"baton-api", "baton-engine", "baton-worker"} <= jobs


def test_alerting_rules_are_valid_and_their_unit_tests_pass() -> None:
    assert "SUCCESS" in run_promtool("check", "rules", str(PROMETHEUS / "alerts.yml"))
    assert "SUCCESS" in run_promtool("test", "rules", "alerts_test.yml", cwd=PROMETHEUS)


def test_the_alerts_cover_what_operators_must_hear_about() -> None:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    names = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert {
        "BatonWorkerDown",
        "BatonQueueDepthGrowing",
        "BatonSchedulerFiringLate",
        "BatonTaskFailureRate",
    } <= names


def _expressions(node: Any) -> list[str]:
    """Every PromQL expression in a dashboard: targets' ``expr`` and query variables."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                found.append(value)
            elif key == "query" and isinstance(value, str | dict):
                found.extend(_expressions({"expr": value} if isinstance(value, str) else value))
            else:
                found.extend(_expressions(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_expressions(item))
    return found


def test_there_are_the_four_dashboards() -> None:
    titles = {json.loads(path.read_text())["title"] for path in DASHBOARDS}
    assert titles == {
        "Baton / Platform overview",
        "Baton / Queues and workers",
        "Baton / Scheduler",
        "Baton / Tenant",
    }


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_valid_json_with_unique_ids(path: Path) -> None:
    board = json.loads(path.read_text())
    assert board["uid"] and board["panels"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_queries_name_only_exported_metrics(path: Path, exported_names: set[str]) -> None:
    expressions = _expressions(json.loads(path.read_text()))
    assert expressions
    referenced = {name for expr in expressions for name in METRIC_NAME.findall(expr)}
    assert referenced, path.name
    assert referenced <= exported_names, sorted(referenced - exported_names)


def test_alerts_name_only_exported_metrics(exported_names: set[str]) -> None:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    referenced = {
        name
        for group in rules["groups"]
        for rule in group["rules"]
        for name in METRIC_NAME.findall(rule["expr"])
    }
    assert referenced <= exported_names, sorted(referenced - exported_names)


def test_tenant_dashboard_has_a_tenant_variable() -> None:
    board = json.loads((GRAFANA / "dashboards" / "tenant.json").read_text())
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert "tenant" in variables
    assert "tenant" in variables["tenant"]["definition"]
    queries = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    assert queries and all('tenant="$tenant"' in q for q in queries)


def test_grafana_provisioning_points_at_prometheus_and_the_dashboards() -> None:
    datasources = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    assert [d["type"] for d in datasources["datasources"]] == ["prometheus"]
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "baton.yml").read_text())
    assert providers["providers"][0]["options"]["path"]
