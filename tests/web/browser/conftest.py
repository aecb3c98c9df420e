"""Browser tests: a live Baton (API, engine, scheduler, worker) and Debian's Chromium.

``live_baton`` starts ``baton dev`` in a subprocess against a database and a Redis database
of its own, so its engine never competes with the engines other tests start. Playwright
drives ``/usr/bin/chromium`` through ``executable_path`` (its own browser download is not
used). Without Chromium or Playwright the tests skip and say how to get them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.billing.fake_stripe import FakeStripe
from tests.billing.webhooks import PRICES, WEBHOOK_SECRET
from tests.fixtures.services import Services, claim_redis_db
from tests.fixtures.stack import flush_redis_db, fresh_database
from tests.web.browser.helpers import LiveBaton

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # The machine's closed network refuses these connections, many at a time.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[3]


def chromium_path() -> str | None:
    return os.environ.get("BATON_CHROMIUM") or shutil.which("chromium")


def _skip_reason() -> str | None:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install -e '.[dev]')"
    if chromium_path() is None:
        return "Chromium is not installed: `make browser` installs Debian's package (root)"
    if not (REPO / "frontend" / "node_modules" / "htmx.org").is_dir():
        return "the dashboard's npm packages are missing: `make install` installs them"
    return None


def _free_port() -> int:
    """A port free a moment ago: another process may take it before ``baton dev`` binds it,
    so ``live_baton`` starts again on another port when that happens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _PortTaken(Exception):
    """``baton dev`` could not bind its port: something else took it first."""


@pytest.fixture(scope="session")
async def live_baton(
    services: Services, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveBaton]:
    """``baton dev`` on a free port, with the demo tenant (its owner is a platform admin)."""
    if reason := _skip_reason():
        pytest.skip(reason)
    async with run_live_baton(services, tmp_path_factory) as live:
        yield live


@asynccontextmanager
async def run_live_baton(
    services: Services,
    tmp_path_factory: pytest.TempPathFactory,
    extra_env: dict[str, str] | None = None,
) -> AsyncIterator[LiveBaton]:
    """``baton dev`` in a subprocess, with a database and a Redis database of its own and
    ``extra_env`` added to its environment; stopped on leaving."""
    with claim_redis_db(services.redis_url) as redis_url:
        await flush_redis_db(redis_url)
        async with fresh_database(services) as database_url:
            env = {
                **os.environ,
                "BATON_ENVIRONMENT": "test",
                "BATON_DATABASE_URL": database_url,
                "BATON_REDIS_URL": redis_url,
                "BATON_HOST": "127.0.0.1",
                "BATON_ARGON2_TIME_COST": "1",
                "BATON_ARGON2_MEMORY_COST": "1024",
                "BATON_HEARTBEAT_SECONDS": "1",
                # Some tasks here leave marker files for their tests on the host (tmp_path).
                "BATON_WORKER_ALLOW_SHELL": "true",
                "BATON_WORKER_SANDBOX": "false",
                # Notifications go to receivers the tests run on this machine.
                "BATON_NOTIFICATION_ALLOWLIST": '["127.0.0.1"]',
                **(extra_env or {}),
            }
            log_dir = tmp_path_factory.mktemp("live-baton")
            for attempt in range(5):
                port = _free_port()
                log_path = log_dir / f"baton-{attempt}.log"
                with log_path.open("w") as log:
                    process = subprocess.Popen(
                        [sys.executable, "-c", "from backend.cli import app; app()", "dev"],
                        cwd=REPO,
                        env={**env, "BATON_PORT": str(port)},
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                url = f"http://127.0.0.1:{port}"
                try:
                    _wait_until_ready(url, process, log_path)
                except _PortTaken:
                    continue
                except BaseException:
                    _stop(process)
                    raise
                break
            else:
                raise RuntimeError("baton dev found its port taken five times running")
            try:
                yield LiveBaton(url=url, log_path=log_path)
            finally:
                _stop(process)


@pytest.fixture(scope="session")
async def live_billed_baton(
    services: Services, tmp_path_factory: pytest.TempPathFactory, stripe_server: FakeStripe
) -> AsyncIterator[LiveBaton]:
    """``baton dev`` with Stripe billing, its Stripe API the local stand-in
    (``tests/billing/fake_stripe.py``: Stripe's servers cannot be reached here)."""
    if reason := _skip_reason():
        pytest.skip(reason)
    env = {
        "BATON_BILLING": "stripe",
        "BATON_STRIPE_SECRET_KEY": "sk_test_baton",
        "BATON_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "BATON_STRIPE_API_BASE": stripe_server.base,
        "BATON_STRIPE_PRICES": json.dumps(PRICES),
        "BATON_STRIPE_METERED_PRICE": "price_task_seconds",
    }
    async with run_live_baton(services, tmp_path_factory, env) as live:
        yield live


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_until_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = log_path.read_text()
            if "address already in use" in output.lower():
                raise _PortTaken(output[-400:])
            raise RuntimeError(f"baton dev exited:\n{output[-4000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"baton dev did not become ready:\n{log_path.read_text()[-4000:]}")


@pytest.fixture(scope="session")
async def chromium(live_baton: LiveBaton) -> AsyncIterator[Any]:
    # The async API, on the tests' own event loop: the sync one would run a loop of its own
    # beside it for the rest of the session.
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path(), args=CHROMIUM_FLAGS
        )
        yield browser
        await browser.close()


@pytest.fixture
async def page(chromium: Any, live_baton: LiveBaton) -> AsyncIterator[Any]:
    """A fresh browser context (no cookies) on the live Baton."""
    context = await chromium.new_context(
        base_url=live_baton.url, viewport={"width": 1280, "height": 860}
    )
    context.set_default_timeout(15_000)
    tab = await context.new_page()
    yield tab
    await context.close()
