"""Members of the ``owner`` tenant with a lesser role, for the job endpoint tests."""

from __future__ import annotations

import pytest
from httpx import AsyncClient

from tests.fixtures.factories import Account, create_member


@pytest.fixture
async def editor(client: AsyncClient, owner: Account) -> Account:
    return await create_member(client, owner, "editor")
