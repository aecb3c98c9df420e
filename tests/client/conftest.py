"""Run the real ``baton`` client in a subprocess against the test app on a real port."""

from __future__ import annotations

from pathlib import Path

import pytest
from httpx import AsyncClient

from tests.client.helpers import Cli
from tests.fixtures.factories import Account, create_api_token


@pytest.fixture
async def cli(client: AsyncClient, owner: Account, server: str, tmp_path: Path) -> Cli:
    """An editor API token of a fresh tenant, not yet logged in."""
    token = await create_api_token(client, owner, "editor")
    return Cli(config_dir=tmp_path / "config", url=server, token=str(token["token"]))
