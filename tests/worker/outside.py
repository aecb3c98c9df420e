"""A small "outside world" on this machine for the sandbox's network tests.

A network namespace joined to the host by a veth pair, holding three addresses a task might
aim at - a public-looking one (11.22.33.2, inside 11.0.0.0/8, globally routed on the
Internet but only reachable on this machine while the test runs), the cloud-metadata
address 169.254.169.254 and a private 10.213.0.2 - with one TCP listener answering on all
of them. The host routes those addresses into the namespace, so the worker itself reaches
every one of them: a task that cannot is being refused by the sandbox, not by a missing
route. No real outside host is ever contacted. Needs root (``ip netns``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

PUBLIC = "11.22.33.2"
HOST_SIDE = "11.22.33.1"
METADATA = "169.254.169.254"
PRIVATE = "10.213.0.2"
PORT = 8089

SERVER = """
import socket, sys
server = socket.create_server(("0.0.0.0", int(sys.argv[1])))
while True:
    connection, _ = server.accept()
    connection.sendall(b"hello from outside\\n")
    connection.close()
"""


@dataclass(frozen=True)
class Outside:
    public: str = PUBLIC
    metadata: str = METADATA
    private: str = PRIVATE
    port: int = PORT


def skip_reason() -> str | None:
    """Why the outside world cannot be built here (None when it can)."""
    if os.geteuid() != 0:
        return "building a network namespace with routes needs root"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def answers(address: str, port: int = PORT) -> bool:
    """Whether the worker's host reaches the listener at ``address``."""
    try:
        with socket.create_connection((address, port), timeout=2) as connection:
            return connection.recv(100).startswith(b"hello")
    except OSError:
        return False


@contextlib.contextmanager
def outside_world() -> Iterator[Outside]:
    """Build the namespace, its listener and the host routes; tear everything down after."""
    suffix = secrets.token_hex(3)
    netns, host_if, ns_if = f"baton-t{suffix}", f"bth{suffix}", f"btn{suffix}"
    server: subprocess.Popen[bytes] | None = None
    _ip("netns", "add", netns)
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", netns)
        _ip("addr", "add", f"{HOST_SIDE}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        for address in (f"{PUBLIC}/30", f"{METADATA}/32", f"{PRIVATE}/32"):
            _ip("-n", netns, "addr", "add", address, "dev", ns_if)
        _ip("-n", netns, "link", "set", ns_if, "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        _ip("-n", netns, "route", "add", "default", "via", HOST_SIDE)
        for address in (METADATA, PRIVATE):
            _ip("route", "add", f"{address}/32", "via", PUBLIC, "dev", host_if)
        server = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-I", "-c", SERVER, str(PORT)]
        )
        deadline = time.monotonic() + 15
        while not answers(PUBLIC):
            if time.monotonic() > deadline:
                raise RuntimeError("the outside listener never answered")
            time.sleep(0.05)
        yield Outside()
    finally:
        if server is not None:
            server.kill()
            server.wait()
        # Deleting the namespace deletes the veth pair, and the host routes through it.
        subprocess.run(["ip", "netns", "delete", netns], check=False, capture_output=True)
