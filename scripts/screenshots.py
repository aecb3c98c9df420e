"""Screenshots of the dashboard's main pages, for the README (``make screenshots``).

Starts ``baton dev`` on a free port with embedded PostgreSQL and Redis in a temporary
directory, fills a demo tenant through the REST API (a DAG job that succeeds, one that
fails, a viewer, an API token), then opens each page in Debian's Chromium with Playwright
and writes ``docs/screenshots/<page>.png``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import structlog

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "screenshots"
DEMO = {"email": "demo@example.com", "password": "baton-demo-password"}
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ETL_JOB = """\
name: nightly-etl
description: Extract, transform in parallel, load, report.
schedule:
  cron: "30 2 * * *"
  timezone: Europe/Berlin
tasks:
  - name: extract
    type: shell
    command: "for i in 1 2 3; do echo extracting part $i; sleep 0.3; done"
  - name: transform_orders
    type: shell
    command: "echo transforming orders"
    depends_on: [extract]
  - name: transform_customers
    type: shell
    command: "echo transforming customers"
    depends_on: [extract]
  - name: load
    type: shell
    command: "echo loading warehouse"
    depends_on: [transform_orders, transform_customers]
  - name: report
    type: python
    function: "worker.builtins:noop"
    depends_on: [load]
"""
FLAKY_JOB = """\
name: billing-sync
tasks:
  - name: fetch_invoices
    type: shell
    command: "echo fetched 42 invoices"
  - name: reconcile
    type: shell
    command: "echo 'ledger mismatch on invoice 17' >&2; exit 3"
    depends_on: [fetch_invoices]
  - name: publish
    type: shell
    command: "echo published"
    depends_on: [reconcile]
"""

log = structlog.get_logger("screenshots")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_baton(data_dir: Path) -> Any:
    port = _free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("BATON_DATABASE_URL", "BATON_REDIS_URL", "BATON_APP_DATABASE_URL")
    }
    env.update({"BATON_DATA_DIR": str(data_dir), "BATON_PORT": str(port)})
    log_file = (data_dir / "baton.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-c", "from backend.cli import app; app()", "dev"],
        cwd=REPO,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((data_dir / "baton.log").read_text()[-3000:])
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log_file.close()


def wait_for_run(api: httpx.Client, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run = api.get(f"/api/v1/runs/{run_id}").json()
        if run["status"] in ("succeeded", "failed", "cancelled"):
            return dict(run)
        time.sleep(0.3)
    raise RuntimeError(f"run {run_id} did not finish")


def seed(url: str) -> dict[str, str]:
    """The demo tenant's jobs and runs; returns the ids the screenshots open."""
    api = httpx.Client(base_url=url, timeout=30)
    tokens = api.post("/api/v1/auth/login", json=DEMO).json()
    api.headers["Authorization"] = f"Bearer {tokens['access_token']}"
    yaml_headers = {"Content-Type": "application/yaml"}
    etl = api.post("/api/v1/jobs", content=ETL_JOB, headers=yaml_headers).json()
    flaky = api.post("/api/v1/jobs", content=FLAKY_JOB, headers=yaml_headers).json()
    etl_run = api.post(f"/api/v1/jobs/{etl['id']}/runs", json={"params": {"day": "today"}}).json()
    failed_run = api.post(f"/api/v1/jobs/{flaky['id']}/runs", json={}).json()
    wait_for_run(api, etl_run["id"])
    wait_for_run(api, failed_run["id"])
    api.post(
        "/api/v1/members",
        json={"email": "viewer@example.com", "role": "viewer", "password": "viewer-password-1"},
    )
    api.post("/api/v1/tokens", json={"name": "ci-deploy", "role": "operator"})
    return {"job": etl["id"], "run": etl_run["id"], "failed_run": failed_run["id"]}


def shoot(url: str, ids: dict[str, str], chromium: str) -> list[Path]:
    from playwright.sync_api import sync_playwright

    pages = {
        "landing": "/",
        "login": "/login",
        "jobs": "/jobs",
        "job": f"/jobs/{ids['job']}",
        "runs": "/runs",
        "run": f"/runs/{ids['run']}",
        "run-failed": f"/runs/{ids['failed_run']}",
        "members": "/settings/members",
        "tokens": "/settings/tokens",
        "audit": "/audit",
        "admin": "/admin",
    }
    written = []
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        anonymous = browser.new_context(base_url=url, viewport={"width": 1280, "height": 800})
        tab = anonymous.new_page()
        for name in ("landing", "login"):
            tab.goto(pages[name])
            written.append(_save(tab, name))
        context = browser.new_context(base_url=url, viewport={"width": 1280, "height": 800})
        tab = context.new_page()
        tab.goto("/login")
        tab.fill("input[name=email]", DEMO["email"])
        tab.fill("input[name=password]", DEMO["password"])
        tab.click("button[type=submit]")
        tab.wait_for_url("**/jobs**")
        for name, path in pages.items():
            if name in ("landing", "login"):
                continue
            tab.goto(path)
            tab.wait_for_load_state("networkidle")
            written.append(_save(tab, name))
        browser.close()
    return written


def _save(tab: Any, name: str) -> Path:
    path = OUT / f"{name}.png"
    tab.screenshot(path=str(path), full_page=True)
    log.info("screenshots.saved", page=name, path=str(path.relative_to(REPO)))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="baton-screens-") as tmp,
        running_baton(Path(tmp)) as url,
    ):
        ids = seed(url)
        shoot(url, ids, args.chromium)


if __name__ == "__main__":
    main()
