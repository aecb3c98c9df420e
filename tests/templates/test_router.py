"""/api/v1/templates: the gallery, tenant templates saved from jobs, instantiation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient

from backend.templates.builtin import BUILTIN
from tests.fixtures.errors import assert_error
from tests.fixtures.factories import Account, create_member
from tests.jobs.helpers import create_job, job_spec
from tests.templates.helpers import TEMPLATES, instantiate, name, run_template

# Values for each built-in's required parameters (the rest take their defaults).
REQUIRED: dict[str, dict[str, Any]] = {
    "http-health-check": {
        "url": "https://example.org/health",
        "alert_webhook": "https://hooks.example.org/alert",
    },
    "postgres-backup-s3": {"bucket": "backups"},
    "file-sync": {"source": "/data/", "destination": "/mirror/"},
    "webhook-relay": {"target_url": "https://example.org/in"},
    "fan-out-etl": {"directory": "/data/in"},
    "data-quality-check": {"alert_webhook": "https://hooks.example.org/dq"},
    "cleanup-old-files": {"directory": "/tmp/exports"},
    "nightly-report": {"webhook": "https://hooks.example.org/report"},
    "python-function": {},
    "docker-container": {},
}


def test_the_gallery_has_the_promised_templates() -> None:
    names = {t["name"] for t in BUILTIN}
    assert len(names) == len(BUILTIN) >= 8
    assert set(REQUIRED) == names, "every built-in is instantiated below"
    for template in BUILTIN:
        schema = template["parameters"]
        assert schema["type"] == "object" and schema["properties"], template["name"]
        assert set(schema["required"]) <= set(schema["properties"])


async def test_anonymous_is_401(client: AsyncClient) -> None:
    assert_error(await client.get(TEMPLATES), 401, "unauthenticated")
    assert_error(
        await client.post(f"{TEMPLATES}/file-sync/instantiate", json={}), 401, "unauthenticated"
    )


async def test_viewer_lists_but_cannot_instantiate(client: AsyncClient, owner: Account) -> None:
    viewer = await create_member(client, owner, "viewer")
    listed = await client.get(TEMPLATES, headers=viewer.headers)
    assert listed.status_code == 200
    assert {t["name"] for t in listed.json()} >= set(REQUIRED)
    shown = await client.get(f"{TEMPLATES}/cleanup-old-files", headers=viewer.headers)
    assert shown.json()["parameters"]["properties"]["days"]["default"] == 30
    refused = await instantiate(client, viewer, "cleanup-old-files", REQUIRED["cleanup-old-files"])
    assert_error(refused, 403, "forbidden")


@pytest.mark.parametrize("template", sorted(REQUIRED))
async def test_every_builtin_instantiates_into_a_valid_job(
    client: AsyncClient, owner: Account, template: str
) -> None:
    job_name = name()
    dry = await instantiate(
        client, owner, template, REQUIRED[template], job_name=job_name, dry_run=True
    )
    assert dry.status_code == 200, dry.text
    assert dry.json()["job"] is None
    assert "{{" not in str(dry.json()["spec"]).replace("${{", "")
    created = await instantiate(client, owner, template, REQUIRED[template], job_name=job_name)
    assert created.status_code == 201, created.text
    job = created.json()["job"]
    assert job["name"] == job_name and job["current_version"] == 1
    assert job["spec"]["params"].items() >= REQUIRED[template].items()


async def test_bad_parameters_are_422(client: AsyncClient, owner: Account) -> None:
    missing = assert_error(
        await instantiate(client, owner, "cleanup-old-files", {}), 422, "validation_failed"
    )
    assert missing["details"][0]["loc"] == ["params", "directory"]
    wrong = await instantiate(client, owner, "cleanup-old-files", {"directory": "/x", "days": "30"})
    assert assert_error(wrong, 422, "validation_failed")["details"][0]["type"] == "type_error"
    unknown = await instantiate(client, owner, "cleanup-old-files", {"directory": "/x", "z": 1})
    assert (
        assert_error(unknown, 422, "validation_failed")["details"][0]["type"] == "extra_forbidden"
    )
    below = await instantiate(client, owner, "cleanup-old-files", {"directory": "/x", "days": -1})
    assert_error(below, 422, "validation_failed")
    enum = await instantiate(client, owner, "file-sync", {**REQUIRED["file-sync"], "tool": "ftp"})
    assert_error(enum, 422, "validation_failed")
    # A value that makes the job spec invalid is the spec's 422.
    bad_cron = await instantiate(
        client, owner, "nightly-report", {**REQUIRED["nightly-report"], "cron": "not a cron"}
    )
    assert_error(bad_cron, 422, "validation_failed")
    assert_error(await instantiate(client, owner, "no-such-template", {}), 404, "not_found")


async def test_name_taken_is_409(client: AsyncClient, owner: Account) -> None:
    job_name = name()
    params = REQUIRED["python-function"]
    assert (
        await instantiate(client, owner, "python-function", params, job_name=job_name)
    ).status_code == 201
    assert_error(
        await instantiate(client, owner, "python-function", params, job_name=job_name),
        409,
        "conflict",
    )


async def test_save_a_job_as_a_template(
    client: AsyncClient, owner: Account, stranger: Account
) -> None:
    job = await create_job(client, owner, job_spec(params={"region": "eu", "limit": 10}))
    template = name()
    saved = await client.post(
        TEMPLATES,
        json={"name": template, "job_id": job["id"], "title": "Mine"},
        headers=owner.headers,
    )
    assert saved.status_code == 201, saved.text
    body = saved.json()
    assert body["source"] == "tenant" and "name" not in body["spec"]
    assert body["parameters"]["properties"]["limit"] == {"default": 10, "type": "integer"}

    made = await instantiate(client, owner, template, {"region": "us"})
    assert made.status_code == 201, made.text
    assert made.json()["job"]["spec"]["params"] == {"region": "us", "limit": 10}

    assert_error(
        await client.get(f"{TEMPLATES}/{template}", headers=stranger.headers), 404, "not_found"
    )
    assert_error(await instantiate(client, stranger, template, {}), 404, "not_found")
    again = await client.post(
        TEMPLATES, json={"name": template, "job_id": job["id"]}, headers=owner.headers
    )
    assert_error(again, 409, "conflict")
    builtin = await client.post(
        TEMPLATES, json={"name": "file-sync", "job_id": job["id"]}, headers=owner.headers
    )
    assert_error(builtin, 409, "conflict")
    others = await client.post(
        TEMPLATES, json={"name": name(), "job_id": job["id"]}, headers=stranger.headers
    )
    assert_error(others, 404, "not_found")

    assert_error(
        await client.delete(f"{TEMPLATES}/{template}", headers=stranger.headers), 404, "not_found"
    )
    assert_error(
        await client.delete(f"{TEMPLATES}/file-sync", headers=owner.headers), 409, "conflict"
    )
    deleted = await client.delete(f"{TEMPLATES}/{template}", headers=owner.headers)
    assert deleted.status_code == 204
    assert_error(
        await client.get(f"{TEMPLATES}/{template}", headers=owner.headers), 404, "not_found"
    )


async def test_shell_template_runs(
    client: AsyncClient, owner: Account, tmp_path: Path, running_worker: object
) -> None:
    old = tmp_path / "old.csv"
    old.write_text("x")
    os.utime(old, (0, 0))
    fresh = tmp_path / "fresh.csv"
    fresh.write_text("y")
    run = await run_template(
        client, owner, "cleanup-old-files", {"directory": str(tmp_path), "days": 1}
    )
    assert run["status"] == "succeeded", run
    assert not old.exists() and fresh.exists()


async def test_http_template_runs(
    client: AsyncClient, owner: Account, server: str, running_worker: object
) -> None:
    run = await run_template(
        client,
        owner,
        "http-health-check",
        {"url": f"{server}/healthz", "alert_webhook": f"{server}/healthz"},
    )
    assert run["status"] == "succeeded", run
    statuses = {t["name"]: t["status"] for t in run["tasks"]}
    assert statuses["check"] == "succeeded" and statuses["alert"] != "succeeded"


async def test_python_template_runs(
    client: AsyncClient, owner: Account, running_worker: object
) -> None:
    run = await run_template(client, owner, "python-function", {})
    assert run["status"] == "succeeded", run


async def test_fan_out_template_runs_one_task_per_file(
    client: AsyncClient, owner: Account, tmp_path: Path, running_worker: object
) -> None:
    for index in range(3):
        (tmp_path / f"part-{index}.csv").write_text("a\nb\n")
    (tmp_path / "skip.txt").write_text("not matched")
    run = await run_template(client, owner, "fan-out-etl", {"directory": str(tmp_path)})
    assert run["status"] == "succeeded", run
    children = [t for t in run["tasks"] if t["parent_id"] is not None]
    assert len(children) == 3 and all(t["status"] == "succeeded" for t in children)
