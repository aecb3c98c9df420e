"""Settings page for notifications (/settings/notifications): channels and rules created
and deleted through forms, by the API's rules (``notify.service``, ``jobs:write``); secrets
chosen by name, their values never shown; a refused form changes nothing."""

from __future__ import annotations

import uuid
from typing import Any

from httpx import AsyncClient

from tests.fixtures.factories import Account, create_member
from tests.runs.factories import create_job, python_task
from tests.secrets.helpers import create_secret, secret_name, secret_value
from tests.web.helpers import Browser, BrowserFactory, assert_login_redirect, assert_page

PAGE = "/settings/notifications"
CHANNELS = "/api/v1/notification-channels"
RULES = "/api/v1/notification-rules"


async def api_list(client: AsyncClient, account: Account, url: str) -> list[dict[str, Any]]:
    response = await client.get(url, headers=account.headers)
    assert response.status_code == 200, response.text
    return list(response.json())


async def _secrets(client: AsyncClient, owner: Account) -> tuple[str, str, str]:
    """A URL secret and a signing secret; answers their names and the URL's value."""
    url, key, value = secret_name("HOOK_URL"), secret_name("HOOK_KEY"), secret_value()
    await create_secret(client, owner, url, f"https://hooks.example.com/{value}")
    await create_secret(client, owner, key, secret_value())
    return url, key, value


def _problems(html: str, form: str) -> str:
    """What the page says above the form ``form`` (channel or rule) about its refusal."""
    start = html.index(f'data-testid="create-{form}"')
    return html[start : html.index("<form", start)]


def _webhook_form(url: str, key: str, **extra: str) -> dict[str, str]:
    return {"name": "ops hook", "kind": "webhook", "url_secret": url, "signing_secret": key,
            **extra}  # fmt: skip


async def test_the_forms_need_a_session(anonymous: Browser) -> None:
    some = uuid.uuid4()
    for path in (f"{PAGE}/channels", f"{PAGE}/channels/{some}/delete", f"{PAGE}/rules",
                 f"{PAGE}/rules/{some}/delete", f"{PAGE}/{some}/test"):  # fmt: skip
        assert_login_redirect(await anonymous.post(path, {"name": "x", "kind": "slack"}))


async def test_owner_creates_and_deletes_channels_and_rules(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    url, key, value = await _secrets(client, owner)
    job = await create_job(client, owner, [python_task("noop")])
    html = assert_page(await owner_browser.get(PAGE))
    assert 'data-testid="create-channel-form"' in html and f'value="{url}"' in html
    assert value not in html

    created = await owner_browser.post(f"{PAGE}/channels", _webhook_form(url, key))
    assert created.status_code == 303, created.text
    assert created.headers["location"] == f"{PAGE}?notice=channel-created"
    mail = await owner_browser.post(
        f"{PAGE}/channels",
        {"name": "ops mail", "kind": "email", "to": "a@example.com, b@example.com",
         "smtp_host": "smtp.example.com", "smtp_port": "2525", "mail_from": "baton@example.com"},
    )  # fmt: skip
    assert mail.status_code == 303, mail.text
    slack = await owner_browser.post(f"{PAGE}/channels", {"name": "chat", "kind": "slack",
                                                          "url_secret": url})  # fmt: skip
    assert slack.status_code == 303, slack.text
    channels = {c["name"]: c for c in await api_list(client, owner, CHANNELS)}
    assert channels["ops hook"]["config"] == {"url_secret": url, "signing_secret": key}
    assert channels["ops mail"]["config"] == {
        "to": ["a@example.com", "b@example.com"], "smtp_host": "smtp.example.com",
        "smtp_port": 2525, "smtp_username": None, "smtp_password_secret": None,
        "smtp_starttls": False, "mail_from": "baton@example.com",
    }  # fmt: skip
    assert channels["chat"]["config"] == {"url_secret": url}

    hook = channels["ops hook"]["id"]
    rule = await owner_browser.post(
        f"{PAGE}/rules",
        {"channel_id": hook, "job_id": job["id"], "events": ["failure", "quota_cancelled"]},
    )
    assert rule.status_code == 303 and rule.headers["location"].endswith("rule-created")
    every = await owner_browser.post(
        f"{PAGE}/rules", {"channel_id": channels["chat"]["id"], "job_id": "", "events": "sla_miss"}
    )
    assert every.status_code == 303, every.text
    rules = {r["channel_id"]: r for r in await api_list(client, owner, RULES)}
    assert (rules[hook]["job_id"], rules[hook]["events"]) == (
        job["id"], ["failure", "quota_cancelled"],
    )  # fmt: skip
    assert (rules[channels["chat"]["id"]]["job_id"], rules[channels["chat"]["id"]]["events"]) == (
        None, ["sla_miss"],
    )  # fmt: skip
    html = assert_page(await owner_browser.get(f"{PAGE}?notice=rule-created"))
    assert "Rule created." in html and html.count('data-testid="rule-row"') == 2
    assert job["name"] in html and "every job" in html and value not in html

    deleted = await owner_browser.post(f"{PAGE}/rules/{rules[hook]['id']}/delete")
    assert deleted.status_code == 303 and deleted.headers["location"].endswith("rule-deleted")
    assert [r["channel_id"] for r in await api_list(client, owner, RULES)] == [
        channels["chat"]["id"]
    ]
    gone = await owner_browser.post(f"{PAGE}/channels/{channels['chat']['id']}/delete")
    assert gone.status_code == 303 and gone.headers["location"].endswith("channel-deleted")
    assert await api_list(client, owner, RULES) == []  # its rules went with it
    assert {c["name"] for c in await api_list(client, owner, CHANNELS)} == {"ops hook", "ops mail"}


async def test_refused_forms_say_why_and_change_nothing(
    client: AsyncClient, owner: Account, stranger: Account, owner_browser: Browser
) -> None:
    url, key, _ = await _secrets(client, owner)
    for data, status, why in (
        ({"name": "x", "kind": "webhook", "url_secret": url}, 422, "needs signing_secret"),
        ({"name": "x", "kind": "slack"}, 422, "needs url_secret"),
        ({"name": "x", "kind": "slack", "url_secret": "NO_SUCH_SECRET"}, 422,
         "No secret named NO_SUCH_SECRET"),
        ({"name": "x", "kind": "pager", "url_secret": url}, 422, "kind"),
        ({"name": "bad/name", "kind": "slack", "url_secret": url}, 422, "name"),
        ({"name": "x", "kind": "email", "to": "not-an-address", "smtp_host": "h",
          "mail_from": "a@b.c"}, 422, "not email addresses"),
        ({"name": "x", "kind": "email", "to": "a@b.c", "smtp_host": "h", "smtp_port": "abc",
          "mail_from": "a@b.c"}, 422, "smtp_port"),
        ({"name": "x", "kind": "email", "to": "a@b.c"}, 422, "needs to, smtp_host and mail_from"),
    ):  # fmt: skip
        html = assert_page(await owner_browser.post(f"{PAGE}/channels", data), status)
        assert why in _problems(html, "channel"), why
        assert 'data-testid="create-channel-form"' in html
    assert await api_list(client, owner, CHANNELS) == []

    created = await owner_browser.post(f"{PAGE}/channels", _webhook_form(url, key))
    assert created.status_code == 303
    [channel] = await api_list(client, owner, CHANNELS)
    theirs = await create_job(client, stranger, [python_task("noop")])
    their_url = secret_name("THEIR_URL")
    await create_secret(client, stranger, their_url, "https://hooks.example.com/theirs")
    their_channel = await client.post(
        CHANNELS, json={"name": "theirs", "kind": "slack", "url_secret": their_url},
        headers=stranger.headers,
    )  # fmt: skip
    for data, status, why in (
        ({"channel_id": channel["id"]}, 422, "events"),
        ({"channel_id": channel["id"], "events": "sla"}, 422, "events"),
        ({"channel_id": "not-a-channel", "events": "failure"}, 422, "channel_id"),
        ({"channel_id": channel["id"], "job_id": "nope", "events": "failure"}, 422, "job_id"),
        ({"channel_id": channel["id"], "job_id": theirs["id"], "events": "failure"}, 404,
         "Job not found"),
        ({"channel_id": their_channel.json()["id"], "events": "failure"}, 404,
         "Notification channel not found"),
        ({"channel_id": str(uuid.uuid4()), "events": "failure"}, 404,
         "Notification channel not found"),
    ):  # fmt: skip
        html = assert_page(await owner_browser.post(f"{PAGE}/rules", data), status)
        assert why in _problems(html, "rule"), why
    assert await api_list(client, owner, RULES) == []
    # Another tenant's objects, unknown ids and malformed ids are not found.
    their_rule = await client.post(
        RULES, json={"channel_id": their_channel.json()["id"], "events": ["failure"]},
        headers=stranger.headers,
    )  # fmt: skip
    for path in (
        f"{PAGE}/channels/{their_channel.json()['id']}/delete",
        f"{PAGE}/rules/{their_rule.json()['id']}/delete",
        f"{PAGE}/{their_channel.json()['id']}/test",
        f"{PAGE}/channels/{uuid.uuid4()}/delete", f"{PAGE}/rules/{uuid.uuid4()}/delete",
        f"{PAGE}/channels/not-an-id/delete", f"{PAGE}/rules/not-an-id/delete",
    ):  # fmt: skip
        assert (await owner_browser.post(path)).status_code == 404, path
    assert len(await api_list(client, stranger, CHANNELS)) == 1
    assert len(await api_list(client, stranger, RULES)) == 1
    assert "theirs" not in assert_page(await owner_browser.get(PAGE))


async def test_viewers_and_operators_see_no_forms_and_are_refused(
    client: AsyncClient, owner: Account, create_browser: BrowserFactory
) -> None:
    url, key, _ = await _secrets(client, owner)
    channel = await client.post(CHANNELS, json=_webhook_form(url, key), headers=owner.headers)
    rule = await client.post(
        RULES, json={"channel_id": channel.json()["id"], "events": ["failure"]},
        headers=owner.headers,
    )  # fmt: skip
    for role in ("viewer", "operator"):
        browser = await create_browser(await create_member(client, owner, role))
        html = assert_page(await browser.get(PAGE))
        assert "ops hook" in html
        for form in ("create-channel-form", "create-rule-form", "channel-delete", "rule-delete"):
            assert f'data-testid="{form}"' not in html
        for path, data in (
            (f"{PAGE}/channels", {"name": "x", "kind": "slack", "url_secret": url}),
            (f"{PAGE}/channels/{channel.json()['id']}/delete", {}),
            (f"{PAGE}/rules", {"channel_id": channel.json()["id"], "events": "failure"}),
            (f"{PAGE}/rules/{rule.json()['id']}/delete", {}),
        ):
            assert (await browser.post(path, data)).status_code == 403, (role, path)
    assert len(await api_list(client, owner, CHANNELS)) == 1
    assert len(await api_list(client, owner, RULES)) == 1
    editor = await create_browser(await create_member(client, owner, "editor"))
    assert 'data-testid="create-rule-form"' in assert_page(await editor.get(PAGE))
    removed = await editor.post(f"{PAGE}/rules/{rule.json()['id']}/delete")
    assert removed.status_code == 303 and await api_list(client, owner, RULES) == []


async def test_forms_without_csrf_change_nothing(
    client: AsyncClient, owner: Account, owner_browser: Browser
) -> None:
    url, key, _ = await _secrets(client, owner)
    await owner_browser.get(PAGE)
    response = await owner_browser.http.post(f"{PAGE}/channels", data=_webhook_form(url, key))
    assert response.status_code == 403 and "csrf_failed" in response.text
    assert await api_list(client, owner, CHANNELS) == []
