"""Settings page for secrets (/settings/secrets): names and metadata only, values
write-only, the API's roles, CSRF on every form."""

from __future__ import annotations

from httpx import AsyncClient

from tests.fixtures.factories import Account, create_member
from tests.secrets.helpers import create_secret, secret_name, secret_value
from tests.web.helpers import Browser, BrowserFactory, assert_login_redirect, assert_page

PAGE = "/settings/secrets"


async def api_secrets(client: AsyncClient, account: Account) -> dict[str, dict[str, object]]:
    response = await client.get("/api/v1/secrets", headers=account.headers)
    assert response.status_code == 200, response.text
    return {s["name"]: s for s in response.json()}


async def test_the_page_needs_a_session(anonymous: Browser) -> None:
    assert_login_redirect(await anonymous.get(PAGE))
    for path in (PAGE, f"{PAGE}/X", f"{PAGE}/X/delete"):
        assert_login_redirect(await anonymous.post(path, {"name": "X", "value": "v"}))


async def test_owner_adds_updates_and_deletes_a_secret(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    name, value, second = secret_name(), secret_value(), secret_value()
    created = await owner_browser.post(PAGE, {"name": name, "value": value, "description": "d"})
    assert created.status_code == 303 and created.headers["location"].endswith("secret-created")
    assert value not in created.headers["location"]
    html = assert_page(await owner_browser.get(created.headers["location"]))
    assert f'data-name="{name}"' in html and "Secret created." in html
    assert value not in html
    before = (await api_secrets(client, owner))[name]

    updated = await owner_browser.post(f"{PAGE}/{name}", {"value": second})
    assert updated.status_code == 303
    after = (await api_secrets(client, owner))[name]
    assert after["updated_at"] > before["updated_at"]
    assert second not in assert_page(await owner_browser.get(PAGE))

    deleted = await owner_browser.post(f"{PAGE}/{name}/delete")
    assert deleted.status_code == 303
    assert name not in await api_secrets(client, owner)


async def test_a_refused_form_does_not_render_the_value_back(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    value = secret_value()
    html = assert_page(await owner_browser.post(PAGE, {"name": "bad-name", "value": value}), 422)
    assert 'value="bad-name"' in html
    assert value not in html
    taken = secret_name()
    await create_secret(client, owner, taken, secret_value())
    html = assert_page(await owner_browser.post(PAGE, {"name": taken, "value": value}), 409)
    assert "already exists" in html and value not in html
    assert len(await api_secrets(client, owner)) == 1


async def test_viewer_sees_names_without_forms_and_is_refused(
    client: AsyncClient, owner: Account, create_browser: BrowserFactory
) -> None:
    name, value = secret_name(), secret_value()
    await create_secret(client, owner, name, value)
    viewer = await create_member(client, owner, "viewer")
    browser = await create_browser(viewer)
    html = assert_page(await browser.get(PAGE))
    assert f'data-name="{name}"' in html and value not in html
    assert 'data-testid="create-secret-form"' not in html
    assert 'data-testid="secret-delete"' not in html
    for path, data in (
        (PAGE, {"name": secret_name(), "value": "v"}),
        (f"{PAGE}/{name}", {"value": "stolen"}),
        (f"{PAGE}/{name}/delete", {}),
    ):
        assert (await browser.post(path, data)).status_code == 403
    assert list(await api_secrets(client, owner)) == [name]


async def test_another_tenants_secret_is_not_found(
    client: AsyncClient, stranger: Account, owner_browser: Browser
) -> None:
    name = secret_name()
    await create_secret(client, stranger, name, secret_value())
    assert name not in assert_page(await owner_browser.get(PAGE))
    assert (await owner_browser.post(f"{PAGE}/{name}", {"value": "x"})).status_code == 404
    assert (await owner_browser.post(f"{PAGE}/{name}/delete")).status_code == 404
    assert name in await api_secrets(client, stranger)


async def test_forms_without_csrf_change_nothing(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    name = secret_name()
    await create_secret(client, owner, name, secret_value())
    await owner_browser.get(PAGE)
    for path in (PAGE, f"{PAGE}/{name}", f"{PAGE}/{name}/delete"):
        response = await owner_browser.http.post(path, data={"name": "NEW", "value": "v"})
        assert response.status_code == 403
    assert list(await api_secrets(client, owner)) == [name]


async def test_unstorable_form_input_is_refused_not_a_500(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    for data in (
        {"name": "NUL_DESC", "value": "v", "description": "a\x00b"},
        {"name": "NUL_VALUE", "value": "a\x00b"},
        {"name": "A\x00B", "value": "v"},
    ):
        assert_page(await owner_browser.post(PAGE, data), 422)
    # A NUL in the path is refused by the input policy before routing.
    assert_page(await owner_browser.post(f"{PAGE}/A%00B", {"value": "v"}), 422)
    assert await api_secrets(client, owner) == {}
