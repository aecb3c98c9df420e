"""Browser tests: a live Baton (API, engine, scheduler, worker) and Debian's Chromium.

``live_baton`` starts ``baton dev`` in a subprocess against a database and a Redis database
of its own, so its engine never competes with the engines other tests start. Playwright
drives ``/usr/bin/chromium`` through ``executable_path`` (its own browser download is not
used). Without Chromium or Playwright the tests skip and say how to get them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import fresh_database, private_redis_db
from tests.fixtures.services import Services
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
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
async def live_baton(
    services: Services, settings: Any, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveBaton]:
    """``baton dev`` on a free port, with the demo tenant (its owner is a platform admin)."""
    if reason := _skip_reason():
        pytest.skip(reason)
    async with fresh_database(services) as database_url:
        port = _free_port()
        log_path = tmp_path_factory.mktemp("live-baton") / "baton.log"
        env = {
            **os.environ,
            "BATON_ENVIRONMENT": "test",
            "BATON_DATABASE_URL": database_url,
            "BATON_REDIS_URL": private_redis_db(services.redis_url, avoid=settings.redis_url),
            "BATON_HOST": "127.0.0.1",
            "BATON_PORT": str(port),
            "BATON_ARGON2_TIME_COST": "1",
            "BATON_ARGON2_MEMORY_COST": "1024",
            "BATON_HEARTBEAT_SECONDS": "1",
        }
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [sys.executable, "-c", "from backend.cli import app; app()", "dev"],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_until_ready(url, process, log_path)
            yield LiveBaton(url=url, log_path=log_path)
        finally:
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
            raise RuntimeError(f"baton dev exited:\n{log_path.read_text()[-4000:]}")
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
