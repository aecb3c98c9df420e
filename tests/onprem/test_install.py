"""The on-prem installer, end to end under a real Docker engine (docs/onprem.md).

Everything goes through the Caddy proxy over HTTPS, verified against the internal CA the
installer exported: sign up, run a job to success on a worker container, a cron fire after
a scheduler container is killed, a restart that keeps the data, backup -> destroyed
volumes -> restore, and a rolling upgrade to a new image. Opt-in (see conftest.py).
"""

from __future__ import annotations

import ssl
import tarfile
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from tests.fixtures.waiting import eventually
from tests.onprem.stack import ADMIN_EMAIL, Stack

PASSWORD = "onprem-password-1"
FINAL = ("succeeded", "failed", "cancelled")


def client(stack: Stack) -> httpx.AsyncClient:
    trust = ssl.create_default_context(cafile=str(stack.ca))
    return httpx.AsyncClient(base_url=stack.url, verify=trust, timeout=15)


async def sign_up(api: httpx.AsyncClient) -> str:
    """A new organisation; the client keeps its token. Returns the e-mail."""
    email = f"onprem-{uuid.uuid4().hex[:8]}@example.com"
    body = {"email": email, "password": PASSWORD, "tenant_name": f"Onprem {email[7:15]}"}
    response = await api.post("/api/v1/auth/signup", json=body)
    assert response.status_code == 201, response.text
    api.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
    return email


async def log_in(api: httpx.AsyncClient, email: str) -> httpx.Response:
    response = await api.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    if response.status_code == 200:
        api.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
    return response


async def create_job(api: httpx.AsyncClient, name: str, **extra: Any) -> str:
    spec = {
        "name": name,
        "tasks": [
            {
                "name": "echo",
                "type": "python",
                "function": "worker.builtins:echo",
                "kwargs": {"value": name},
            }
        ],
        **extra,
    }
    response = await api.post("/api/v1/jobs", json=spec)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def run_to_the_end(api: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    response = await api.post(f"/api/v1/jobs/{job_id}/runs")
    assert response.status_code == 201, response.text
    run_id = response.json()["id"]

    async def state() -> dict[str, Any]:
        return dict((await api.get(f"/api/v1/runs/{run_id}")).json())

    return await eventually(
        state, lambda run: run["status"] in FINAL, timeout=120, interval=0.5, what="the run ends"
    )


async def ready(stack: Stack) -> None:
    async def probe() -> int:
        try:
            async with client(stack) as api:
                return (await api.get("/readyz")).status_code
        except httpx.TransportError:
            return 0

    await eventually(probe, lambda code: code == 200, timeout=300, interval=1, what="/readyz")


async def test_the_installer_leaves_a_ready_stack_with_its_secrets_private(stack: Stack) -> None:
    env = stack.dir / ".env"
    assert env.stat().st_mode & 0o777 == 0o600
    assert stack.ca.read_text().startswith("-----BEGIN CERTIFICATE-----")
    async with client(stack) as api:  # TLS verified against the exported internal CA
        assert (await api.get("/readyz")).json()["status"] == "ok"
    services = set(stack.compose("ps", "--services").stdout.split())
    assert {"api-1", "api-2", "scheduler-1", "scheduler-2", "worker", "proxy", "prometheus"} <= (
        services
    )
    workers = stack.compose("ps", "-q", "worker").stdout.split()
    assert len(workers) == 2


async def test_a_job_runs_to_success_on_a_worker_container_through_the_proxy(
    stack: Stack,
) -> None:
    async with client(stack) as api:
        await sign_up(api)
        job_id = await create_job(api, "hello-onprem")
        run = await run_to_the_end(api, job_id)
    assert run["status"] == "succeeded", run
    assert [task["status"] for task in run["tasks"]] == ["succeeded"]


async def test_the_first_platform_admin_can_sign_in(stack: Stack) -> None:
    async with client(stack) as api:
        body = {"email": ADMIN_EMAIL, "password": "onprem-admin-password-1"}
        response = await api.post("/api/v1/auth/login", json=body)
    assert response.status_code == 200, response.text


async def test_the_next_cron_fire_happens_after_a_scheduler_container_is_killed(
    stack: Stack,
) -> None:
    async with client(stack) as api:
        await sign_up(api)
        job_id = await create_job(api, "every-minute", schedule={"cron": "* * * * *"})
        stack.command("docker", "kill", stack.container("scheduler-1"))
        killed_at = datetime.now(UTC)

        async def scheduled_runs() -> list[dict[str, Any]]:
            page = (await api.get("/api/v1/runs", params={"job_id": job_id})).json()
            return [
                run
                for run in page["items"]
                if run["trigger"] == "schedule"
                and datetime.fromisoformat(run["created_at"]) > killed_at
                and run["status"] == "succeeded"
            ]

        # The next minute's fire, by whichever scheduler holds the lease now.
        await eventually(scheduled_runs, timeout=180, interval=1, what="a cron fire")
    stack.compose("up", "-d", "--no-deps", "scheduler-1")


async def test_a_restart_of_the_whole_stack_keeps_the_data(stack: Stack) -> None:
    async with client(stack) as api:
        email = await sign_up(api)
        job_id = await create_job(api, "survives-restart")
    stack.compose("stop")
    stack.compose("up", "-d", "--scale", "worker=2")
    await ready(stack)
    async with client(stack) as api:
        assert (await log_in(api, email)).status_code == 200
        assert (await api.get(f"/api/v1/jobs/{job_id}")).status_code == 200
        run = await run_to_the_end(api, job_id)
    assert run["status"] == "succeeded", run


async def test_restore_after_the_volumes_are_destroyed_brings_the_data_back(
    stack: Stack,
) -> None:
    async with client(stack) as api:
        email = await sign_up(api)
        job_id = await create_job(api, "backed-up")
    backup = stack.dir / "backup.tar.gz"
    stack.run("backup", "--dir", str(stack.dir), "--out", str(backup))
    assert backup.stat().st_mode & 0o777 == 0o600
    with tarfile.open(backup) as archive:
        assert {"baton.dump", "env", "users.acl", "MANIFEST"} <= set(archive.getnames())

    stack.run("uninstall", "--dir", str(stack.dir), "--purge")
    label = f"label=com.docker.compose.project={stack.project}"
    assert not stack.command("docker", "ps", "-aq", "--filter", label).stdout.strip()
    assert not (stack.dir / ".env").exists()

    stack.run("restore", "--dir", str(stack.dir), str(backup))
    async with client(stack) as api:
        assert (await log_in(api, email)).status_code == 200
        assert (await api.get(f"/api/v1/jobs/{job_id}")).status_code == 200
        run = await run_to_the_end(api, job_id)  # the workers' Redis users came back too
    assert run["status"] == "succeeded", run


async def test_upgrade_rolls_every_process_to_a_new_image_and_keeps_serving(
    stack: Stack,
) -> None:
    async with client(stack) as api:
        email = await sign_up(api)
        job_id = await create_job(api, "before-upgrade")
    before = _env(stack)["BATON_IMAGE"]
    # A new release: the same code under a new image id (the path is what is tested).
    after = f"{before.split(':')[0]}:upgrade-test"
    stack.command(
        "sh", "-c", f"printf 'FROM {before}\\nLABEL org.baton.upgrade=1\\n' | "
        f"DOCKER_BUILDKIT=0 docker build -q -t {after} -",
    )  # fmt: skip
    images = stack.dir / "new-images.env"
    images.write_text(f"BATON_IMAGE={after}\n")
    stack.run("upgrade", "--dir", str(stack.dir), "--images", str(images))

    assert _env(stack)["BATON_IMAGE"] == after
    for service in ("api-1", "api-2", "scheduler-1", "scheduler-2", "worker"):
        image = stack.command(
            "docker", "inspect", "--format", "{{.Config.Image}}", stack.container(service)
        ).stdout.strip()
        assert image == after, service
    assert list((stack.dir / "backups").glob("baton-*.tar.gz")), "upgrade backs up first"
    async with client(stack) as api:
        assert (await log_in(api, email)).status_code == 200
        run = await run_to_the_end(api, job_id)
    assert run["status"] == "succeeded", run


def _env(stack: Stack) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in (stack.dir / ".env").read_text().splitlines())
    return {key: value for key, value in pairs}
