"""``baton secrets rotate-key``: re-wrap every data key with the current KEK.

The command runs ``asyncio.run`` itself, so it is invoked in a worker thread while the
test runs on the session loop (as in tests/test_cli.py). Each test leaves every data key
wrapped by the generated (dev) key again, so the rest of the session is unaffected.
"""

from __future__ import annotations

import asyncio
import base64
import os

import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner, Result

from backend.cli import app as cli
from backend.core.settings import Environment, Settings
from backend.secrets import crypto
from tests.fixtures.factories import Account
from tests.runs.factories import create_job, shell_task, task_of, trigger, wait_for_run
from tests.secrets.helpers import QUEUE, create_secret, secret_name, secret_value

NEW_KEK = base64.b64encode(os.urandom(32)).decode()
# The key-encryption key generated for this test process (the app's and the CLI's alike).
DEV_SECRETS_KEK = Settings(_env_file=None, environment=Environment.test).secrets_kek  # type: ignore[call-arg]


async def rotate(monkeypatch: pytest.MonkeyPatch, kid: str, kek: str, previous: str) -> Result:
    monkeypatch.setenv("BATON_SECRETS_KEK_ID", kid)
    monkeypatch.setenv("BATON_SECRETS_KEK", kek)
    monkeypatch.setenv("BATON_SECRETS_PREVIOUS_KEKS", previous)
    return await asyncio.to_thread(lambda: CliRunner().invoke(cli, ["secrets", "rotate-key"]))


async def stored(engine: AsyncEngine, account: Account, name: str) -> crypto.Sealed:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT * FROM secrets WHERE tenant_id = :t AND name = :n"),
                {"t": account.tenant_id, "n": name},
            )
        ).one()
    return crypto.Sealed(
        bytes(row.value_ciphertext),
        bytes(row.value_nonce),
        bytes(row.wrapped_key),
        bytes(row.wrapped_key_nonce),
        row.key_id,
    )


@pytest.mark.usefixtures("cli_env")
async def test_rotation_rewraps_once_and_values_survive(
    client: AsyncClient,
    owner: Account,
    owner_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name, value = secret_name(), secret_value()
    await create_secret(client, owner, name, value)
    before = await stored(owner_engine, owner, name)
    assert before.key_id == "dev"

    first = await rotate(monkeypatch, "k2", NEW_KEK, f'{{"dev": "{DEV_SECRETS_KEK}"}}')
    try:
        assert first.exit_code == 0, first.output
        assert "Key k2:" in first.output and " 0 failed" in first.output
        assert " 0 re-wrapped" not in first.output
        after = await stored(owner_engine, owner, name)
        assert after.key_id == "k2"
        assert after.value_ciphertext == before.value_ciphertext  # the value is not touched
        only_new = Settings(_env_file=None, secrets_kek=NEW_KEK, secrets_kek_id="k2")  # type: ignore[call-arg]
        assert crypto.unseal(only_new, owner.tenant_id, name, after) == value

        again = await rotate(monkeypatch, "k2", NEW_KEK, f'{{"dev": "{DEV_SECRETS_KEK}"}}')
        assert again.exit_code == 0 and " 0 re-wrapped" in again.output  # idempotent

        # Without the key the data keys are wrapped by, nothing can be re-wrapped.
        lost = await rotate(monkeypatch, "k3", base64.b64encode(os.urandom(32)).decode(), "{}")
        assert lost.exit_code == 1 and " 0 re-wrapped" in lost.output
        assert " 0 failed" not in lost.output  # not "10 failed"
        assert (await stored(owner_engine, owner, name)).key_id == "k2"
        audit = await client.get("/api/v1/audit", headers=owner.headers)
        rotated = [e for e in audit.json()["items"] if e["action"] == "secret.key_rotated"]
        assert len(rotated) == 1  # the second, idempotent run changed nothing
        assert rotated[0]["details"] == {"key_id": "k2", "names": [name]}
        assert rotated[0]["actor_type"] == "system"
    finally:
        back = await rotate(monkeypatch, "dev", DEV_SECRETS_KEK, f'{{"k2": "{NEW_KEK}"}}')
        assert back.exit_code == 0, back.output
    assert (await stored(owner_engine, owner, name)).key_id == "dev"
    assert value not in first.output + back.output


@pytest.mark.usefixtures("cli_env", "secrets_worker")
async def test_a_value_the_engine_cannot_unwrap_fails_the_attempt(
    client: AsyncClient, owner: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine only knows the dev key; a data key wrapped by another is unreadable."""
    name = secret_name()
    await create_secret(client, owner, name, secret_value())
    job = await create_job(
        client, owner, [shell_task("t", f"echo ${{{{ secrets.{name} }}}}")], queue=QUEUE
    )
    moved = await rotate(monkeypatch, "k2", NEW_KEK, f'{{"dev": "{DEV_SECRETS_KEK}"}}')
    try:
        assert moved.exit_code == 0, moved.output
        run = await trigger(client, owner, job["id"])
        done = await wait_for_run(client, owner, run["id"])
        assert done["status"] == "failed"
        assert f"{name} is not readable" in task_of(done, "t")["error"]
    finally:
        back = await rotate(monkeypatch, "dev", DEV_SECRETS_KEK, f'{{"k2": "{NEW_KEK}"}}')
        assert back.exit_code == 0, back.output
