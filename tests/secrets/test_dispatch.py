"""End to end: a task that uses a secret, run by the real engine and a real worker.

The value must appear nowhere in PostgreSQL outside the encrypted store, nowhere in Redis in
clear, in no log line, output, error or API response, and never to a viewer.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from httpx import AsyncClient
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from kernel.wire import keys
from kernel.wire.protocol import TASK_FIELD
from tests.fixtures.factories import Account, create_member
from tests.fixtures.http_server import Server, serve
from tests.fixtures.streams import observe
from tests.runs.factories import create_job, shell_task, task_of, trigger, wait_for_run
from tests.secrets.helpers import QUEUE, create_secret, secret_name, secret_value
from worker.runner import Worker

pytestmark = pytest.mark.usefixtures("secrets_worker")


def forms(value: str) -> list[str]:
    """The value and the encodings a leak would most likely take."""
    return [value, base64.b64encode(value.encode()).decode().rstrip("=")]


async def postgres_text_containing(engine: AsyncEngine, needles: list[str]) -> list[str]:
    """Every table (owner view, RLS does not apply to it... FORCE does: so bypass as the
    superuser owner) whose rows, as text, contain one of ``needles``."""
    found = []
    async with engine.connect() as conn:
        tables = (
            await conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
        ).scalars()
        for table in list(tables):
            for needle in needles:
                hits = await conn.scalar(
                    text(f'SELECT count(*) FROM "{table}" t WHERE strpos(t::text, :n) > 0'),
                    {"n": needle},
                )
                if hits:
                    found.append(f"{table}: {needle}")
    return found


async def redis_text(redis: Redis) -> str:
    """Everything in this test session's Redis database, as one string."""
    chunks: list[Any] = []
    async for key in redis.scan_iter(count=500):
        kind = await redis.type(key)
        if kind == "string":
            chunks.append(await redis.get(key))
        elif kind == "stream":
            chunks.append(await redis.xrange(key))
        elif kind == "hash":
            chunks.append(await redis.hgetall(key))
        elif kind == "list":
            chunks.append(await redis.lrange(key, 0, -1))
        elif kind == "set":
            chunks.append(await redis.smembers(key))
        elif kind == "zset":
            chunks.append(await redis.zrange(key, 0, -1))
        chunks.append(key)
    return json.dumps(chunks, default=str)


async def everything_a_member_reads(
    client: AsyncClient, account: Account, job_id: str, run_id: str
) -> str:
    urls = [
        f"/api/v1/jobs/{job_id}",
        f"/api/v1/jobs/{job_id}/versions",
        f"/api/v1/runs/{run_id}",
        f"/api/v1/runs/{run_id}/logs",
        "/api/v1/runs",
        "/api/v1/secrets",
    ]
    texts = []
    for url in urls:
        response = await client.get(url, headers=account.headers)
        assert response.status_code == 200, f"{url}: {response.text}"
        texts.append(response.text)
    return "\n".join(texts)


async def test_a_secret_reaches_the_task_and_nothing_else(
    client: AsyncClient,
    owner: Account,
    owner_engine: AsyncEngine,
    redis: Redis,
    secrets_worker: Worker,
    capfd: pytest.CaptureFixture[str],
) -> None:
    name, value = secret_name("DB_PASSWORD"), secret_value()
    await create_secret(client, owner, name, value)
    reference = f"${{{{ secrets.{name} }}}}"
    command = (
        f'test "$PW" = "{reference}" || exit 3; '  # the env var and the command agree
        'echo "plain: $PW"; '
        'printf %s "$PW" | base64; '
        'echo "{\\"pw\\": \\"$PW\\"}" > $BATON_OUTPUT; '
        'echo "to stderr $PW" >&2'
    )
    job = await create_job(
        client, owner, [shell_task("use", command, env={"PW": reference})], queue=QUEUE
    )
    dispatched = await observe(redis, keys.queue_stream(str(owner.tenant_id), QUEUE))
    run = await trigger(client, owner, job["id"])
    done = await wait_for_run(client, owner, run["id"])
    used = task_of(done, "use")
    assert done["status"] == "succeeded", done
    assert used["output"] == {"pw": "***"}

    logs = await client.get(f"/api/v1/runs/{run['id']}/logs", headers=owner.headers)
    lines = [line["line"] for line in logs.json()["items"]]
    assert "plain: ***" in lines and "to stderr ***" in lines
    assert "***" in lines  # its base64 form, masked too

    leaks = forms(value)
    viewer = await create_member(client, owner, "viewer")
    for account in (owner, viewer):
        seen = await everything_a_member_reads(client, account, job["id"], run["id"])
        assert not [f for f in leaks if f in seen]
        assert reference in seen if account is viewer else True  # versions keep the reference

    assert await postgres_text_containing(owner_engine, leaks) == []

    dumped = await redis_text(redis)
    assert not [f for f in leaks if f in dumped]
    # What travelled was an envelope: the dispatch entry carries ciphertext.
    sealed = [json.loads(fields[TASK_FIELD])["secrets"] for fields in await dispatched.read()]
    assert sealed and all(s and s["ciphertext"] for s in sealed)

    captured = capfd.readouterr()
    assert not [f for f in leaks if f in captured.out + captured.err]


async def test_a_missing_secret_fails_the_attempt_clearly(
    client: AsyncClient, owner: Account
) -> None:
    job = await create_job(
        client,
        owner,
        [shell_task("needs", "echo never ran", env={"PW": "${{ secrets.NEVER_CREATED }}"})],
        queue=QUEUE,
    )
    run = await trigger(client, owner, job["id"])
    done = await wait_for_run(client, owner, run["id"])
    assert done["status"] == "failed"
    failed = task_of(done, "needs")
    assert failed["status"] == "failed"
    assert "NEVER_CREATED is not defined in this tenant" in failed["error"]
    logs = await client.get(f"/api/v1/runs/{run['id']}/logs", headers=owner.headers)
    assert "never ran" not in logs.text


async def test_a_deleted_secret_fails_later_runs(client: AsyncClient, owner: Account) -> None:
    name = secret_name()
    await create_secret(client, owner, name, secret_value())
    job = await create_job(
        client, owner, [shell_task("t", f"echo ${{{{ secrets.{name} }}}}")], queue=QUEUE
    )
    first = await wait_for_run(client, owner, (await trigger(client, owner, job["id"]))["id"])
    assert first["status"] == "succeeded"
    await client.delete(f"/api/v1/secrets/{name}", headers=owner.headers)
    second = await wait_for_run(client, owner, (await trigger(client, owner, job["id"]))["id"])
    assert second["status"] == "failed"
    assert f"{name} is not defined" in task_of(second, "t")["error"]


async def test_another_tenants_secret_of_the_same_name_is_not_used(
    client: AsyncClient, owner: Account, stranger: Account
) -> None:
    name, theirs = secret_name(), secret_value()
    await create_secret(client, stranger, name, theirs)
    job = await create_job(
        client,
        owner,
        [shell_task("t", f"echo ${{{{ secrets.{name} }}}} > /dev/null")],
        queue=QUEUE,
    )
    done = await wait_for_run(client, owner, (await trigger(client, owner, job["id"]))["id"])
    assert done["status"] == "failed"
    assert f"{name} is not defined" in task_of(done, "t")["error"]


@pytest.fixture(scope="module")
def echo_server() -> Iterator[Server]:
    """A local HTTP server that answers with what it received (tests/fixtures/http_server.py)."""
    with serve() as running:
        yield running


async def test_http_url_header_and_body_get_their_secrets(
    client: AsyncClient, owner: Account, echo_server: Server
) -> None:
    names = {part: secret_name(part) for part in ("Q", "TOKEN", "BODY")}
    values = {part: secret_value() for part in names}
    for part, name in names.items():
        await create_secret(client, owner, name, values[part])
    ref = {part: f"${{{{ secrets.{name} }}}}" for part, name in names.items()}
    task = {
        "name": "call",
        "type": "http",
        "method": "POST",
        "url": f"{echo_server.base}/echo?k={ref['Q']}",
        "headers": {"X-Token": ref["TOKEN"]},
        "body": {"nested": [f"pw={ref['BODY']}"]},
    }
    job = await create_job(client, owner, [task], queue=QUEUE)
    done = await wait_for_run(client, owner, (await trigger(client, owner, job["id"]))["id"])
    assert done["status"] == "succeeded", done
    # The server received the values ...
    assert {"method": "POST", "path": f"/echo?k={values['Q']}"} in echo_server.hits
    # ... and the echo of all three came back masked.
    echoed = task_of(done, "call")["output"]["body"]  # {status_code, headers, body}
    assert echoed["path"] == "/echo?k=***" and echoed["x_token"] == "***"
    assert json.loads(echoed["body"]) == {"nested": ["pw=***"]}
    logs = await client.get(f"/api/v1/runs/{done['id']}/logs", headers=owner.headers)
    assert "/echo -> 200" in logs.text  # the executor logs the URL without its query
    seen = json.dumps(done) + logs.text
    assert not [v for v in values.values() if v in seen]
