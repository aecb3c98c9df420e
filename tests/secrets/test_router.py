"""/api/v1/secrets: every endpoint anonymous / wrong role / other tenant / not found / valid /
bad input, and no response ever carries a value."""

from __future__ import annotations

import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.errors import assert_error
from tests.fixtures.factories import Account, create_member
from tests.secrets.helpers import SECRETS, create_secret, secret_name, secret_value


async def test_create_list_get_update_delete(client: AsyncClient, owner: Account) -> None:
    name, value = secret_name("DB_PASSWORD"), secret_value()
    created = await create_secret(client, owner, name, value, description="primary db")
    assert created["name"] == name
    assert created["description"] == "primary db"
    assert created["key_id"] == "dev"
    assert created["created_by"] == str(owner.user_id) == created["updated_by"]
    assert set(created) == {
        "id", "name", "description", "key_id", "created_by", "created_at", "updated_by",
        "updated_at",
    }  # fmt: skip

    listed = await client.get(SECRETS, headers=owner.headers)
    assert listed.status_code == 200
    assert [s["name"] for s in listed.json()] == [name]
    got = await client.get(f"{SECRETS}/{name}", headers=owner.headers)
    assert got.status_code == 200 and got.json() == created

    new_value = secret_value()
    updated = await client.patch(
        f"{SECRETS}/{name}", json={"value": new_value}, headers=owner.headers
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["updated_at"] >= created["updated_at"]
    described = await client.patch(
        f"{SECRETS}/{name}", json={"description": "replica"}, headers=owner.headers
    )
    assert described.json()["description"] == "replica"

    for response in (created, listed.json(), got.json(), updated.json(), described.json()):
        assert value not in str(response) and new_value not in str(response)

    deleted = await client.delete(f"{SECRETS}/{name}", headers=owner.headers)
    assert deleted.status_code == 204
    assert_error(await client.get(f"{SECRETS}/{name}", headers=owner.headers), 404, "not_found")
    assert (await client.get(SECRETS, headers=owner.headers)).json() == []


async def test_every_change_is_audited_without_the_value(
    client: AsyncClient, owner: Account
) -> None:
    name, value, second = secret_name(), secret_value(), secret_value()
    await create_secret(client, owner, name, value)
    await client.patch(f"{SECRETS}/{name}", json={"value": second}, headers=owner.headers)
    await client.delete(f"{SECRETS}/{name}", headers=owner.headers)
    audit = await client.get("/api/v1/audit", headers=owner.headers)
    assert audit.status_code == 200
    events = [e for e in audit.json()["items"] if e["action"].startswith("secret.")]
    assert [e["action"] for e in events] == ["secret.deleted", "secret.updated", "secret.created"]
    assert all(e["details"]["name"] == name for e in events)
    assert events[1]["details"]["changed"] == ["value"]
    assert value not in audit.text and second not in audit.text


async def test_anonymous_is_refused_everywhere(client: AsyncClient) -> None:
    name = secret_name()
    for method, url, body in (
        ("POST", SECRETS, {"name": name, "value": "x"}),
        ("GET", SECRETS, None),
        ("GET", f"{SECRETS}/{name}", None),
        ("PATCH", f"{SECRETS}/{name}", {"value": "x"}),
        ("DELETE", f"{SECRETS}/{name}", None),
    ):
        response = await client.request(method, url, json=body)
        assert_error(response, 401, "unauthenticated")


@pytest.mark.parametrize("role", ["viewer", "operator"])
async def test_readers_see_metadata_but_cannot_write(
    client: AsyncClient, owner: Account, role: str
) -> None:
    member = await create_member(client, owner, role)
    name, value = secret_name(), secret_value()
    await create_secret(client, owner, name, value)

    listed = await client.get(SECRETS, headers=member.headers)
    assert listed.status_code == 200 and name in listed.text
    got = await client.get(f"{SECRETS}/{name}", headers=member.headers)
    assert got.status_code == 200
    assert value not in listed.text + got.text

    for method, url, body in (
        ("POST", SECRETS, {"name": secret_name(), "value": "x"}),
        ("PATCH", f"{SECRETS}/{name}", {"value": "stolen"}),
        ("DELETE", f"{SECRETS}/{name}", None),
    ):
        response = await client.request(method, url, json=body, headers=member.headers)
        assert_error(response, 403, "forbidden")
    # Nothing changed.
    assert (await client.get(f"{SECRETS}/{name}", headers=owner.headers)).json() == got.json()


async def test_editors_may_write(client: AsyncClient, owner: Account) -> None:
    editor = await create_member(client, owner, "editor")
    name = secret_name()
    await create_secret(client, editor, name, secret_value())
    response = await client.patch(
        f"{SECRETS}/{name}", json={"value": secret_value()}, headers=editor.headers
    )
    assert response.status_code == 200
    assert (await client.delete(f"{SECRETS}/{name}", headers=editor.headers)).status_code == 204


async def test_another_tenants_secret_is_not_found(
    client: AsyncClient, owner: Account, stranger: Account
) -> None:
    name, value = secret_name(), secret_value()
    theirs = await create_secret(client, stranger, name, value)
    for method, body in (("GET", None), ("PATCH", {"value": "overwritten"}), ("DELETE", None)):
        response = await client.request(
            method, f"{SECRETS}/{name}", json=body, headers=owner.headers
        )
        assert_error(response, 404, "not_found")
    assert name not in (await client.get(SECRETS, headers=owner.headers)).text
    # The same name is free in the owner's tenant, and theirs is untouched.
    await create_secret(client, owner, name, secret_value())
    still = await client.get(f"{SECRETS}/{name}", headers=stranger.headers)
    assert still.json() == theirs


async def test_unknown_names_are_not_found(client: AsyncClient, owner: Account) -> None:
    for name in ("NOPE", "not-a-valid-name", "x" * 64):
        for method, body in (("GET", None), ("PATCH", {"value": "v"}), ("DELETE", None)):
            response = await client.request(
                method, f"{SECRETS}/{name}", json=body, headers=owner.headers
            )
            assert_error(response, 404, "not_found")


async def test_duplicate_name_is_a_conflict(client: AsyncClient, owner: Account) -> None:
    name = secret_name()
    await create_secret(client, owner, name, secret_value())
    response = await client.post(
        SECRETS, json={"name": name, "value": "other"}, headers=owner.headers
    )
    assert_error(response, 409, "conflict")


MARK = "value-that-must-not-echo"


@pytest.mark.parametrize(
    "body",
    [
        {"name": "lower_case", "value": MARK},
        {"name": "1STARTS_WITH_DIGIT", "value": MARK},
        {"name": "HAS-DASH", "value": MARK},
        {"name": "A" * 65, "value": MARK},
        {"name": "", "value": MARK},
        {"name": "OK_NAME", "value": ""},
        {"name": "OK_NAME", "value": MARK * 2000},
        {"name": "OK_NAME"},
        {"value": MARK},
        {"name": "OK_NAME", "value": 42},
        {"name": "OK_NAME", "value": MARK, "extra": 1},
        {"name": "OK_NAME", "value": MARK, "description": "d" * 501},
        {"name": ["OK_NAME"], "value": MARK},
    ],
)
async def test_bad_create_bodies_are_422(
    client: AsyncClient, owner: Account, body: dict[str, object]
) -> None:
    response = await client.post(SECRETS, json=body, headers=owner.headers)
    assert_error(response, 422, "validation_failed")
    assert MARK not in response.text
    assert (await client.get(SECRETS, headers=owner.headers)).json() == []


@pytest.mark.parametrize(
    "body", [{}, {"value": ""}, {"value": None, "description": None}, {"value": 1}, {"x": 1}]
)
async def test_bad_update_bodies_are_422(
    client: AsyncClient, owner: Account, body: dict[str, object]
) -> None:
    name = secret_name()
    before = await create_secret(client, owner, name, secret_value())
    response = await client.patch(f"{SECRETS}/{name}", json=body, headers=owner.headers)
    assert_error(response, 422, "validation_failed")
    assert (await client.get(f"{SECRETS}/{name}", headers=owner.headers)).json() == before


async def test_a_rejected_value_is_not_echoed(client: AsyncClient, owner: Account) -> None:
    value = secret_value() + "x" * 32_768
    response = await client.post(
        SECRETS, json={"name": "TOO_LONG", "value": value}, headers=owner.headers
    )
    assert_error(response, 422, "validation_failed")
    assert value[:40] not in response.text


async def test_value_is_kept_exactly_and_only_encrypted(
    client: AsyncClient, owner: Account, owner_engine: AsyncEngine
) -> None:
    name, value = secret_name(), f"  {secret_value()}\n"
    created = await create_secret(client, owner, name, value)
    async with owner_engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT * FROM secrets WHERE tenant_id = :t AND name = :n"),
                {"t": owner.tenant_id, "n": name},
            )
        ).one()
    assert row.key_id == created["key_id"]
    assert len(row.wrapped_key) == 48 and len(row.value_nonce) == 12
    stored = b"".join(bytes(v) for v in row if isinstance(v, bytes | memoryview))
    assert value.strip().encode() not in stored


@pytest.mark.parametrize(
    "raw",
    [
        b'{"name": "NUL_VALUE", "value": "a\\u0000b"}',
        b'{"name": "NUL_DESC", "value": "v", "description": "a\\u0000b"}',
        b'{"name": "SURROGATE", "value": "a\\ud800b"}',
        b'{"name": "SURROGATE", "value": "v", "description": "\\udfff"}',
    ],
)
async def test_unstorable_text_is_422_not_500(
    client: AsyncClient, owner: Account, raw: bytes
) -> None:
    headers = {**owner.headers, "Content-Type": "application/json"}
    response = await client.post(SECRETS, content=raw, headers=headers)
    assert_error(response, 422, "validation_failed")
    name = secret_name()
    await create_secret(client, owner, name, secret_value())
    patch = raw.replace(b'"name": "NUL_VALUE", ', b"").replace(b'"name": "NUL_DESC", ', b"")
    patch = patch.replace(b'"name": "SURROGATE", ', b"")
    response = await client.patch(f"{SECRETS}/{name}", content=patch, headers=headers)
    assert_error(response, 422, "validation_failed")


async def test_a_nul_in_the_path_is_refused_by_the_input_policy(
    client: AsyncClient, owner: Account
) -> None:
    for method, body in (("GET", None), ("PATCH", {"value": "v"}), ("DELETE", None)):
        response = await client.request(
            method, f"{SECRETS}/A%00B", json=body, headers=owner.headers
        )
        assert_error(response, 422, "validation_failed")


@pytest.mark.parametrize("path", ["%ED%A0%80", "%F0%9F%98%80", "a b", "A" * 64])
async def test_odd_names_in_the_path_are_not_found(
    client: AsyncClient, owner: Account, path: str
) -> None:
    for method, body in (("GET", None), ("PATCH", {"value": "v"}), ("DELETE", None)):
        response = await client.request(
            method, f"{SECRETS}/{path}", json=body, headers=owner.headers
        )
        assert_error(response, 404, "not_found")
