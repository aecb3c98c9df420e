"""The on-prem stack, installed by scripts/onprem/baton-onprem under a real Docker engine.

Opt-in: ``BATON_TEST_ONPREM=1`` (``make test-install``). Building the images takes minutes
the first time (debootstrap, Debian packages, wheels; about 8 minutes on 2 busy cores) and
the whole test about 7 minutes more, which ``make test`` should not pay. The
images are cached in a dockerd data root of this suite's own under BATON_BUILD_CACHE
(default ~/.cache/baton-onprem), so later runs only rebuild what changed (Baton's image
when the source changed: about 3 minutes).

Skips, saying why, when the engine or the tools cannot run here: root (dockerd,
debootstrap), dockerd (Debian: docker.io), docker-compose or the compose plugin,
debootstrap, curl. The dockerd is this session's own (tests/fixtures/docker_engine.py),
stopped at the end with every container; the stack is uninstalled with its volumes first.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.docker_engine import EngineUnavailable, own_dockerd
from tests.onprem.stack import ADMIN_EMAIL, Stack, failure, has_compose_plugin

# The first test builds the images (about 15 minutes cold on 2 busy cores): the suite's
# 300-second limit for a hang (pyproject) would cut it short.
INSTALL_TIMEOUT_SECONDS = 2400
# Installs on new ports when Docker finds one taken (see the ``stack`` fixture).
PORT_ATTEMPTS = 3


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.timeout(INSTALL_TIMEOUT_SECONDS))


def _free_port() -> int:
    """A port free now, below Linux's ephemeral range (32768-60999): the kernel hands ports of
    that range to every outgoing connection, so one picked there can be taken before the stack
    binds it; below it, only a process that asks for that very port can."""
    while True:
        port = random.randint(20000, 32000)
        with socket.socket() as probe:
            try:
                # Every address, as Docker publishes it: one taken on another address only
                # (an outgoing connection's local port, say) fails Docker's bind too.
                probe.bind(("0.0.0.0", port))
            except OSError:
                continue  # taken: another
            return port


def _free_ports(count: int) -> list[int]:
    """``count`` different free ports (each picked on its own could be the same one)."""
    ports: list[int] = []
    while len(ports) < count:
        port = _free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _why_not() -> str | None:
    """Why the stack cannot be installed here, or None."""
    if os.environ.get("BATON_TEST_ONPREM") != "1":
        return (
            "the on-prem install test is opt-in (minutes: it builds images and starts a "
            "whole stack): BATON_TEST_ONPREM=1 or `make test-install`"
        )
    if os.geteuid() != 0:
        return "needs root (dockerd, debootstrap)"
    missing = [
        tool for tool in ("dockerd", "docker", "debootstrap", "curl") if not shutil.which(tool)
    ]
    if not shutil.which("docker-compose") and not has_compose_plugin(dict(os.environ)):
        missing.append("docker-compose (or the compose plugin)")
    if missing:
        tools = ", ".join(missing)
        return f"not installed: {tools} (Debian: docker.io docker-compose debootstrap curl)"
    return None


@pytest.fixture(scope="session")
def onprem_engine() -> Iterator[dict[str, str]]:
    """A dockerd of this session's own whose data root (the image cache) persists; yields
    the environment (DOCKER_HOST) to run docker and the installer with."""
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    cache = Path(
        os.environ.get("BATON_BUILD_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "baton-onprem"
    )
    cache.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        lock = stack.enter_context((cache / "dockerd.lock").open("w"))
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pytest.skip(f"another session uses the image cache in {cache} right now")
        try:
            url = stack.enter_context(
                own_dockerd(
                    data_root=cache / "dockerd",
                    # Compose's networks: a /16 of our own, away from other engines' bridges.
                    extra_args=["--default-address-pool", "base=10.214.0.0/16,size=24"],
                )
            )
        except EngineUnavailable as exc:
            pytest.skip(f"no Docker engine can run here: {exc}")
        env = {
            **os.environ,
            "DOCKER_HOST": url,
            "BATON_BUILD_CACHE": str(cache),
            # Wheels are built with this interpreter (a 3.11 with pip, like the image's).
            "BATON_PYTHON": sys.executable,
        }
        yield env
        _prune(env)


def _prune(env: dict[str, str]) -> None:
    """Keep the cache to the newest Baton image: with the vfs driver every image layer is a
    full copy, so old builds add up to gigabytes."""

    def docker(*args: str) -> str:
        result = subprocess.run(
            ["docker", *args], env=env, capture_output=True, text=True, check=False
        )
        return result.stdout

    tags = docker("image", "ls", "baton/baton", "--format", "{{.Repository}}:{{.Tag}}").split()
    releases = [tag for tag in tags if not tag.endswith(":upgrade-test")]  # newest first
    stale = [tag for tag in tags if tag not in releases[:1]]
    if stale:
        docker("image", "rm", "--force", *stale)
    docker("image", "prune", "--force")
    docker("volume", "prune", "--force")


@pytest.fixture(scope="module")
def stack(
    onprem_engine: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """Baton installed by ``baton-onprem install``, non-interactively, as the README says;
    uninstalled with its volumes afterwards. A port taken between its probe and Docker's
    bind ("address already in use") is not a failure of the installer: the stack is
    removed and installed again on other ports."""
    directory = tmp_path_factory.mktemp("onprem")
    password = tmp_path_factory.mktemp("onprem-secret") / "admin-password"
    password.write_text("onprem-admin-password-1\n")
    installed: Stack | None = None
    try:
        for attempt in range(1, PORT_ATTEMPTS + 1):
            https_port, http_port, prometheus_port = _free_ports(3)
            installed = Stack(
                dir=directory, env=onprem_engine, https_port=https_port, project="batontest"
            )
            result = installed.run(
                "install",
                "--dir", str(directory),
                "--domain", "localhost",
                "--admin-email", ADMIN_EMAIL,
                "--admin-password-file", str(password),
                "--workers", "2",
                "--https-port", str(https_port),
                "--http-port", str(http_port),
                "--prometheus-port", str(prometheus_port),
                "--project", installed.project,
                "--yes",
                check=False,
            )  # fmt: skip
            if result.returncode == 0:
                break
            taken = "address already in use" in result.stdout + result.stderr
            if not taken or attempt == PORT_ATTEMPTS:
                raise failure(result)
            installed.run("uninstall", "--dir", str(directory), "--purge", check=False)
        assert installed is not None
        yield installed
    finally:
        if installed is not None:
            installed.run("uninstall", "--dir", str(directory), "--purge", check=False)
