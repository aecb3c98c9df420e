"""The API's /metrics: route templates as labels, promtool-clean, the bearer token."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from backend.app import create_app
from backend.core.settings import Settings
from backend.metrics import configure
from backend.metrics import http as http_metrics
from tests.fixtures.errors import assert_error
from tests.fixtures.factories import Account
from tests.metrics.helpers import run_promtool

TOKEN = "metrics-token-0123456789"


async def test_http_metrics_are_labelled_by_route_template_not_raw_path(
    client: AsyncClient, owner: Account
) -> None:
    run_id = uuid.uuid4()
    missing = await client.get(f"/api/v1/runs/{run_id}", headers=owner.headers)
    assert_error(missing, 404, "not_found")
    await client.get(f"/no/such/path/{run_id}")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert re.search(
        r'http_requests_total\{handler="/api/v1/runs/\{run_id\}",method="GET",status="4xx"\} ',
        text,
    ), text
    assert 'http_request_duration_seconds_bucket{handler="/api/v1/runs/{run_id}"' in text
    assert 'handler="none"' in text  # an unknown path is grouped, not recorded as itself
    assert str(run_id) not in text
    assert 'handler="/metrics"' not in text  # scrapes are not instrumented
    assert "# HELP baton_runs_finished_total " in text  # Baton's registry is exposed too


async def test_scraped_metrics_pass_promtool_check_metrics(
    client: AsyncClient, owner: Account, tmp_path: Path
) -> None:
    await client.get("/api/v1/jobs", headers=owner.headers)
    response = await client.get("/metrics")
    assert response.status_code == 200
    scraped = tmp_path / "metrics.txt"
    scraped.write_text(response.text)
    output = run_promtool("check", "metrics", stdin=scraped.read_text())
    assert not output.strip(), output  # no lint problems either


@pytest.fixture
async def guarded(settings: Settings) -> AsyncIterator[AsyncClient]:
    """An API whose /metrics wants a token (/metrics needs neither PostgreSQL nor Redis)."""
    app = create_app(settings.model_copy(update={"metrics_token": TOKEN}))
    transport = ASGITransport(app=app)
    async with AsyncClient(transport=transport, base_url="http://baton.test") as http:
        yield http


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "unauthenticated"),
        ({"Authorization": f"Basic {TOKEN}"}, "unauthenticated"),
        ({"Authorization": "Bearer "}, "unauthenticated"),
        ({"Authorization": "Bearer wrong-token"}, "invalid_token"),
        ({"Authorization": f"Bearer {TOKEN}x"}, "invalid_token"),
    ],
)
async def test_metrics_token_refuses_requests_without_it(
    guarded: AsyncClient, headers: dict[str, str], code: str
) -> None:
    response = await guarded.get("/metrics", headers=headers)
    assert_error(response, 401, code)
    assert response.headers["www-authenticate"] == "Bearer"
    assert "baton_" not in response.text


async def test_metrics_token_admits_the_right_bearer(guarded: AsyncClient) -> None:
    response = await guarded.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert "# TYPE baton_task_attempts_finished_total counter" in response.text


async def test_without_a_token_metrics_are_open(client: AsyncClient) -> None:
    assert (await client.get("/metrics")).status_code == 200


async def test_labelled_metrics_are_scraped_at_zero_before_their_first_event(
    client: AsyncClient,
) -> None:
    """Dashboards and alerts see 0, not an absent series, for every known label value."""
    fresh = str(uuid.uuid4())  # a configured tenant nothing has happened to yet
    configure([fresh])
    try:
        text = (await client.get("/metrics")).text
    finally:
        configure([])
    for series in (
        f'baton_runs_finished_total{{status="failed",tenant="{fresh}"}} 0.0',
        "baton_task_attempts_finished_total"
        f'{{reason="timeout",status="failed",tenant="{fresh}"}} 0.0',
        f'baton_tasks_dispatched_total{{tenant="{fresh}"}} 0.0',
        f'baton_task_start_latency_seconds_count{{tenant="{fresh}"}} 0.0',
    ):
        assert series in text, series
    for outcome in ("fired", "skipped", "missed"):
        assert f'baton_schedule_ticks_total{{outcome="{outcome}"}} ' in text


def test_a_fresh_process_exposes_the_label_values_at_zero() -> None:
    """Nothing recorded at all (a new process): the series are there, at zero."""
    code = (
        "from prometheus_client import generate_latest;"
        "from kernel.metrics import REGISTRY;"
        "print(generate_latest(REGISTRY).decode())"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert 'baton_schedule_ticks_total{outcome="fired"} 0.0' in output
    assert 'baton_runs_finished_total{status="cancelled",tenant="other"} 0.0' in output
    assert 'baton_engine_event_lag_seconds_count{kind="finished"} 0.0' in output


def _requests_counted(text: str, handler: str, method: str, status: str) -> float:
    pattern = (
        rf'http_requests_total\{{handler="{re.escape(handler)}",method="{method}",'
        rf'status="{status}"\}} (\S+)'
    )
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


async def test_remembered_route_templates_label_every_request_like_the_first(
    client: AsyncClient, owner: Account, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The template of a path is remembered (a few thousand paths, least recently used
    out): repeated and evicted paths are still counted under their template, and an
    unknown path under ``none``."""
    assert http_metrics._RememberedRouteNames in {m.cls for m in app.user_middleware}
    monkeypatch.setattr(http_metrics, "ROUTE_NAMES_KEPT", 2)
    template = "/api/v1/runs/{run_id}"
    before = await client.get("/metrics")
    counted = _requests_counted(before.text, template, "GET", "4xx")
    unknown = _requests_counted(before.text, "none", "GET", "4xx")
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for run_id in (first, first, second, third, first):  # the first is evicted, then asked
        missing = await client.get(f"/api/v1/runs/{run_id}", headers=owner.headers)
        assert_error(missing, 404, "not_found")
    for _ in range(2):
        await client.get("/no/such/path")
    after = (await client.get("/metrics")).text
    assert _requests_counted(after, template, "GET", "4xx") == counted + 5
    assert _requests_counted(after, "none", "GET", "4xx") == unknown + 2
    assert str(first) not in after
