"""Removes a docker task's container when the worker that started it dies.

A shell task's processes die with their worker (``worker/sandbox/reaper.py``); a container
is the Docker engine's child, not the worker's, so a worker killed outright (SIGKILL, the
OOM killer) would leave it running while the engine retries its attempt elsewhere. So the
docker executor starts this guard, a process of its own, as soon as a container runs::

    python -P container_guard.py <container id> <engine address>

with a pipe on its standard input that only the worker holds. The worker never writes to
it but one line, ``done``, once it has removed the container itself; then the guard exits.
If the pipe ends without that line, the worker is gone (the kernel closed its end), and the
guard kills and removes the container (its anonymous volumes with it), then exits.

Standalone on purpose (the standard library and the Docker SDK only): it must not need the
worker's imports, and it starts in a session of its own so that a signal sent to the
worker's process group does not reach it. ``<engine address>`` is a ``unix://`` socket the
worker's client used, or empty for the environment's engine (``docker.from_env``).
"""

from __future__ import annotations

import sys

STAND_DOWN = b"done\n"


def _client(address: str):  # type: ignore[no-untyped-def]  # the SDK is untyped
    import docker

    if address.startswith("unix://"):
        return docker.DockerClient(base_url=address, timeout=30)
    return docker.from_env(timeout=30)


def main(argv: list[str]) -> int:
    container_id, address = argv[1], argv[2] if len(argv) > 2 else ""
    told = sys.stdin.buffer.read()  # until the worker's end of the pipe closes
    if told == STAND_DOWN:
        return 0
    client = _client(address)
    try:
        container = client.containers.get(container_id)
        container.remove(v=True, force=True)  # force: kill it first if it still runs
    except Exception as error:  # noqa: BLE001 - already gone, or the engine is away
        sys.stderr.write(f"container_guard: {container_id}: {error}\n")
        return 1
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
