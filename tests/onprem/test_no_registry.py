"""A Docker engine that answers but cannot pull images must not fail the test run: the
services finder falls back to the embedded servers (ARCHITECTURE.md, "Known traps")."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from redis import Redis

from tests.fixtures import services as finder
from tests.fixtures.services import Services


@contextlib.contextmanager
def _no_registry() -> Iterator[tuple[str, str]]:
    # What the engine answers when postgres:15 cannot be pulled; the registry itself cannot
    # exist here, so its refusal is what is simulated.
    import docker

    raise docker.errors.ImageNotFound("pull access denied for postgres, repository not found")
    yield ("", "")  # pragma: no cover - a generator context manager needs a yield


def test_an_engine_that_cannot_pull_falls_back_to_the_embedded_servers(
    monkeypatch: pytest.MonkeyPatch, services: Services
) -> None:
    monkeypatch.setattr(finder, "_docker_answers", lambda: True)
    monkeypatch.setattr(finder, "_containers", _no_registry)
    # PostgreSQL from the environment (starting an embedded one here would take long); Redis
    # is what is left to find, and it must come from the embedded server.
    monkeypatch.setenv("BATON_TEST_DATABASE_URL", services.database_url)
    monkeypatch.delenv("BATON_TEST_REDIS_URL", raising=False)
    with finder.find_services() as found:
        assert found.source == "embedded"
        assert found.database_url == services.database_url
        client = Redis.from_url(found.redis_url)
        try:
            assert client.ping()
        finally:
            client.close()
